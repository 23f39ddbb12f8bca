"""Everything the guest portal says, in Russian and English."""

from __future__ import annotations

from appliance.web import errors
from appliance.web.i18n import Text, merge

_OWN = {
    "portal.title": Text("Wi-Fi для гостей", "Guest Wi-Fi"),
    "portal.welcome": Text("Добро пожаловать!", "Welcome!"),
    "portal.law": Text(
        "По закону доступ в Интернет через общественный Wi-Fi открывается только после идентификации "
        "пользователя (Постановление Правительства РФ № 758).",
        "By Russian law, Internet access over public Wi-Fi is given only after the user has been "
        "identified (Government Decree No. 758).",
    ),
    "portal.not_configured": Text(
        "В этом магазине вход через Wi-Fi пока не настроен, поэтому подключиться к Интернету сейчас нельзя.",
        "Sign-in over Wi-Fi is not set up in this store yet, so the Internet cannot be reached now.",
    ),
    "portal.ask_staff": Text(
        "Пожалуйста, обратитесь к сотрудникам магазина.",
        "Please ask the store staff.",
    ),
}

CATALOGUE = merge(errors.MESSAGES, _OWN)
