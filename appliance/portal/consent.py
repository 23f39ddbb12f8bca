"""The consent texts a guest agrees to, and the version recorded with each login.

Two separate documents (152-FZ as amended from 1 September 2025: the personal-data consent is a
document of its own, not merged into terms or with another consent):
- the personal-data consent, required: identifying the guest is what the law asks before access;
- the promotions consent (38-FZ art. 18), optional and never a condition of access.

The version recorded is the configured `consent_version` plus a short hash of the texts as shown,
in both languages: if the operator's name or the retention period changes without the version
being bumped, the log still tells the two texts apart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from appliance.web.i18n import LANGS, Lang, Text

TEXT_HASH_LENGTH: Final = 8

PERSONAL_DATA: Final = (
    Text(
        "Я даю согласие оператору {operator} на обработку моих персональных данных: номера мобильного телефона "
        "(или фамилии, имени и вида документа, удостоверяющего личность, если вход по ваучеру), MAC-адреса и "
        "IP-адреса моего устройства, времени начала и окончания подключения и объёма переданных данных.",
        "I consent to {operator} processing my personal data: my mobile phone number (or my name and the type of "
        "my identity document when I use a voucher), the MAC and IP addresses of my device, the start and end "
        "times of my connection and the amount of data transferred.",
    ),
    Text(
        "Цель обработки — идентификация пользователя и его оборудования при доступе в Интернет через "
        "общественную сеть Wi-Fi, как требуют Федеральный закон «О связи» и Постановление Правительства РФ № 758.",
        "The purpose is identifying the user and the user's equipment for Internet access over public Wi-Fi, as "
        "the Federal Law on Communications and Government Decree No. 758 require.",
    ),
    Text(
        "Действия с данными: сбор, запись, хранение, использование, передача по законному запросу "
        "уполномоченных государственных органов, удаление. Данные хранятся в России {days} дней, затем удаляются.",
        "What is done with the data: collection, recording, storage, use, disclosure to authorised state bodies on "
        "a lawful request, deletion. The data is stored in Russia for {days} days and then deleted.",
    ),
    Text(
        "Согласие действует до его отзыва. Отозвать его можно, обратившись к сотрудникам магазина или письменно "
        "по адресу: {address}.",
        "The consent is valid until withdrawn. To withdraw it, ask the store staff or write to: {address}.",
    ),
)

PROMOTIONS: Final = (
    Text(
        "Я согласен получать от {operator} рекламные сообщения об акциях и предложениях магазина по SMS на "
        "указанный номер телефона.",
        "I agree to receive advertising messages about the store's offers from {operator} by SMS to the phone "
        "number I gave.",
    ),
    Text(
        "Это согласие необязательно: доступ в Интернет от него не зависит. Отозвать его можно в любой момент, "
        "обратившись к сотрудникам магазина или по адресу: {address}.",
        "This consent is optional: Internet access does not depend on it. It can be withdrawn at any time by "
        "asking the store staff or writing to: {address}.",
    ),
)


@dataclass(frozen=True)
class ConsentTexts:
    operator: str
    address: str
    retention_days: int
    version: str
    """The configured version; `recorded_version` is what the log keeps."""

    def _fill(self, texts: tuple[Text, ...], lang: Lang) -> list[str]:
        params = {"operator": self.operator, "address": self.address, "days": self.retention_days}
        return [t.get(lang).format(**params) for t in texts]

    def personal_data(self, lang: Lang) -> list[str]:
        return self._fill(PERSONAL_DATA, lang)

    def promotions(self, lang: Lang) -> list[str]:
        return self._fill(PROMOTIONS, lang)

    @property
    def recorded_version(self) -> str:
        shown = "\n".join(p for lang in LANGS for p in [*self.personal_data(lang), *self.promotions(lang)])
        return f"{self.version}#{hashlib.sha256(shown.encode()).hexdigest()[:TEXT_HASH_LENGTH]}"


def consent_texts(
    operator_name: str, operator_address: str, store_name: str, retention_days: int, version: str
) -> ConsentTexts:
    """The texts for the configured operator; an empty address points at the store itself."""
    return ConsentTexts(
        operator=operator_name or store_name,
        address=operator_address or store_name,
        retention_days=retention_days,
        version=version,
    )
