"""Everything the guest portal says, in Russian and English.

Every error says what happened and what to do next; none tells whether a phone number is known.
"""

from __future__ import annotations

from appliance.web import csrf, errors
from appliance.web.i18n import Text, merge

_PAGES = {
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
    "portal.ask_staff": Text("Пожалуйста, обратитесь к сотрудникам магазина.", "Please ask the store staff."),
    "portal.error": Text("Ошибка:", "Error:"),
    "device.unknown.title": Text("Не удалось определить ваше устройство", "Your device could not be recognised"),
    "device.unknown.hint": Text(
        "Отключитесь от сети Wi-Fi и подключитесь снова, затем откройте любой сайт. Если не поможет, обратитесь "
        "к сотрудникам магазина.",
        "Disconnect from the Wi-Fi network, connect again and open any website. If that does not help, ask the "
        "store staff.",
    ),
    # --- login page
    "login.phone.title": Text("Вход по номеру телефона", "Sign in with your phone number"),
    "login.phone.label": Text("Номер мобильного телефона", "Mobile phone number"),
    "login.phone.hint": Text("Например, +7 912 345-67-89.", "For example, +7 912 345-67-89."),
    "login.method.label": Text("Как подтвердить номер", "How to confirm the number"),
    "login.method.sms": Text("SMS с кодом", "A code by SMS"),
    "login.method.call": Text("Бесплатный звонок с этого номера", "A free call from this number"),
    "login.phone.submit": Text("Получить код", "Get a code"),
    "login.voucher.title": Text("Вход по ваучеру", "Sign in with a voucher"),
    "login.voucher.hint": Text(
        "Ваучер выдают сотрудники магазина, проверив документ, удостоверяющий личность.",
        "The store staff issue vouchers after checking an identity document.",
    ),
    "login.voucher.label": Text("Код ваучера", "Voucher code"),
    "login.voucher.submit": Text("Войти по ваучеру", "Sign in with the voucher"),
    "login.external.title": Text("Вход через {name}", "Sign in with {name}"),
    "login.external.hint": Text(
        "Вы перейдёте на страницу {name}: там подтвердят ваш номер телефона и вернут вас сюда.",
        "You will go to the {name} page: it confirms your phone number and brings you back here.",
    ),
    "login.external.submit": Text("Войти через {name}", "Sign in with {name}"),
    "login.promos": Text("Акции магазина", "The store's offers"),
    # --- consent
    "consent.pd.label": Text(
        "Согласен(на) на обработку моих персональных данных", "I consent to the processing of my personal data"
    ),
    "consent.pd.required": Text("обязательно для входа", "required to sign in"),
    "consent.promo.label": Text(
        "Хочу получать SMS об акциях магазина", "I would like to get SMS about the store's offers"
    ),
    "consent.promo.optional": Text("необязательно, на доступ не влияет", "optional, access does not depend on it"),
    "consent.read": Text("Текст согласия", "Read the consent"),
    "consent.pd.title": Text("Согласие на обработку персональных данных", "Consent to personal data processing"),
    "consent.promo.title": Text("Согласие на получение рекламы", "Consent to advertising"),
    "consent.version": Text("Редакция {version}", "Version {version}"),
    "consent.back": Text("Вернуться ко входу", "Back to sign-in"),
    # --- remembered device
    "relogin.title": Text("С возвращением!", "Welcome back!"),
    "relogin.text": Text(
        "Это устройство уже входило как {who}. Можно подключиться снова без нового кода.",
        "This device signed in before as {who}. You can connect again without a new code.",
    ),
    "relogin.consent_changed": Text(
        "Текст согласия на обработку данных изменился: прочитайте его и подтвердите ещё раз.",
        "The personal data consent has changed: please read it and confirm again.",
    ),
    "relogin.submit": Text("Подключиться", "Connect"),
    # --- code page
    "code.title": Text("Введите код", "Enter the code"),
    "code.sent": Text("Мы отправили SMS с кодом на номер {phone}.", "We sent an SMS with a code to {phone}."),
    "code.label": Text("Код из SMS", "Code from the SMS"),
    "code.hint": Text("{length} цифр. Код действует до {time}.", "{length} digits. The code is valid until {time}."),
    "code.submit": Text("Войти", "Sign in"),
    "code.resend": Text("Отправить новый код", "Send a new code"),
    "code.resend_at": Text(
        "Не пришло SMS? Новый код можно запросить в {time}.", "No SMS? A new code can be requested at {time}."
    ),
    "code.change": Text("Изменить номер", "Change the number"),
    "call.title": Text("Подтвердите номер звонком", "Confirm the number with a call"),
    "call.text": Text(
        "Позвоните с номера {phone} на номер {number}. Звонок бесплатный: он сразу сбросится.",
        "Call {number} from {phone}. The call is free: it hangs up at once.",
    ),
    "call.until": Text("Позвонить нужно до {time}.", "Call before {time}."),
    "call.submit": Text("Я позвонил(а)", "I have called"),
    # --- after login
    "welcome.title": Text("Вы подключены к Интернету", "You are connected to the Internet"),
    "welcome.identified": Text("Вы вошли в гостевую сеть", "You are signed in to the guest network"),
    "welcome.no_gateway": Text(
        "Вход записан, но доступ в Интернет в этой сети пока не открывается: "
        "роутер магазина ещё не подключён к порталу. Пожалуйста, сообщите об этом персоналу.",
        "Your sign-in is recorded, but this network does not open Internet access yet: "
        "the store's router is not connected to the portal. Please tell the staff.",
    ),
    "welcome.until": Text("Доступ открыт до {time}.", "Access is open until {time}."),
    "welcome.continue": Text("Перейти на {host}", "Continue to {host}"),
    "welcome.finish": Text(
        "Если страница не сменилась сама, нажмите здесь, чтобы открыть доступ",
        "If the page did not change by itself, tap here to open access",
    ),
    "welcome.venue": Text("Акции магазина", "The store's offers"),
    "welcome.logout": Text("Выйти из сети", "Sign out"),
    "welcome.logout_hint": Text(
        "Выход закрывает доступ с этого устройства; в следующий раз понадобится новый код.",
        "Signing out closes access from this device; next time a new code is needed.",
    ),
    "venue.title": Text("Акции магазина", "The store's offers"),
    "venue.empty": Text("Сейчас акций нет. Заходите ещё!", "There are no offers right now. Come again!"),
    "venue.back": Text("На страницу входа", "To the sign-in page"),
}

_ERRORS = {
    "phone.invalid": Text(
        "Номер не распознан. Введите номер мобильного телефона полностью, например +7 912 345-67-89.",
        "The number was not recognised. Enter your full mobile number, for example +7 912 345-67-89.",
    ),
    "phone.country": Text(
        "Коды отправляются только на номера с кодом страны {codes}. Введите такой номер или попросите у "
        "сотрудников ваучер.",
        "Codes are sent only to numbers with the country code {codes}. Enter such a number or ask the staff for a "
        "voucher.",
    ),
    "phone.not_mobile": Text(
        "Это не мобильный номер, SMS на него не придёт. Введите номер мобильного телефона.",
        "This is not a mobile number, an SMS cannot reach it. Enter a mobile phone number.",
    ),
    "consent.required": Text(
        "Без согласия на обработку персональных данных войти нельзя: закон требует идентификации. Отметьте "
        "согласие и нажмите кнопку ещё раз.",
        "You cannot sign in without consenting to the processing of your personal data: the law requires "
        "identification. Tick the consent and press the button again.",
    ),
    "code.device_limited": Text(
        "С этого устройства недавно запрашивали коды. Новый можно запросить в {time}; если коды не приходят, "
        "попросите у сотрудников ваучер.",
        "Codes were requested from this device recently. A new one can be requested at {time}; if codes do not "
        "arrive, ask the staff for a voucher.",
    ),
    "code.too_early": Text(
        "Новый код можно запросить в {time}. Пока введите код из последнего SMS.",
        "A new code can be requested at {time}. Meanwhile, enter the code from the last SMS.",
    ),
    "code.budget": Text(
        "Коды по SMS на сегодня закончились. Попросите у сотрудников магазина ваучер для входа.",
        "No more SMS codes can be sent today. Ask the store staff for a voucher to sign in.",
    ),
    "code.not_sent": Text(
        "Не удалось отправить код. Проверьте номер и попробуйте через минуту или попросите у сотрудников ваучер.",
        "The code could not be sent. Check the number and try again in a minute, or ask the staff for a voucher.",
    ),
    "code.format": Text(
        "Введите код из SMS: только цифры, без пробелов.", "Enter the code from the SMS: digits only, no spaces."
    ),
    "code.wrong": Text(
        "Код неверный. Осталось попыток: {left}. Проверьте SMS и введите код ещё раз.",
        "The code is wrong. Attempts left: {left}. Check the SMS and enter the code again.",
    ),
    "code.locked": Text(
        "Код введён неверно слишком много раз и больше не действует. Запросите новый код.",
        "The code was entered wrongly too many times and no longer works. Request a new code.",
    ),
    "code.expired": Text(
        "Этот код больше не действует: истёк срок или запрошен новый. Запросите новый код.",
        "This code no longer works: it expired or a newer one was requested. Request a new code.",
    ),
    "call.pending": Text(
        "Звонок пока не поступил. Осталось проверок: {left}. Позвоните на номер {number} и нажмите кнопку ещё раз.",
        "No call has arrived yet. Checks left: {left}. Call {number} and press the button again.",
    ),
    "call.check_failed": Text(
        "Не удалось проверить звонок. Нажмите кнопку ещё раз через несколько секунд.",
        "The call could not be checked. Press the button again in a few seconds.",
    ),
    "voucher.wrong": Text(
        "Ваучер не подошёл. Проверьте код на ваучере и введите его ещё раз или обратитесь к сотрудникам.",
        "The voucher did not work. Check the code on the voucher and enter it again, or ask the staff.",
    ),
    "voucher.limited": Text(
        "Слишком много неверных кодов ваучера. Попробуйте снова в {time} или обратитесь к сотрудникам.",
        "Too many wrong voucher codes. Try again at {time} or ask the staff.",
    ),
    "external.refused": Text(
        "Подтвердить вход через сервис не удалось: ответ устарел или не прошёл проверку. Попробуйте ещё раз или "
        "войдите другим способом.",
        "The sign-in through the service could not be confirmed: its answer was too old or failed the check. Try "
        "again or sign in another way.",
    ),
    "relogin.gone": Text(
        "Это устройство больше не запомнено. Войдите по номеру телефона или по ваучеру.",
        "This device is no longer remembered. Sign in with your phone number or a voucher.",
    ),
    "login.gateway_failed": Text(
        "Вы прошли идентификацию, но открыть доступ не удалось. Попробуйте через минуту; если не получится, "
        "обратитесь к сотрудникам.",
        "You are identified, but access could not be opened. Try again in a minute; if it still fails, ask the staff.",
    ),
    "login.method_unavailable": Text(
        "Этот способ входа сейчас недоступен. Выберите другой или обратитесь к сотрудникам.",
        "This way of signing in is not available now. Choose another one or ask the staff.",
    ),
}

CATALOGUE = merge(errors.MESSAGES, csrf.MESSAGES, _PAGES, _ERRORS)
