"""Everything the staff console says, in Russian and English."""

from __future__ import annotations

from appliance.web import csrf, errors
from appliance.web.i18n import Text, merge

_OWN = {
    "app.title": Text("Консоль магазина", "Store console"),
    "nav.label": Text("Разделы", "Sections"),
    "nav.cameras": Text("Камеры", "Cameras"),
    "nav.inbox": Text("Демо-телефон", "Demo phone"),
    "nav.user": Text("Вы вошли как {username}", "Signed in as {username}"),
    "nav.logout": Text("Выйти", "Sign out"),
    # Login
    "login.title": Text("Вход для сотрудников", "Staff sign-in"),
    "login.username": Text("Имя пользователя", "Username"),
    "login.password": Text("Пароль", "Password"),
    "login.submit": Text("Войти", "Sign in"),
    "login.wrong": Text(
        "Неверное имя пользователя или пароль. Проверьте раскладку клавиатуры и Caps Lock и попробуйте снова.",
        "Wrong username or password. Check the keyboard layout and Caps Lock and try again.",
    ),
    "login.empty": Text("Введите имя пользователя и пароль.", "Enter both the username and the password."),
    "login.locked": Text(
        "Слишком много неудачных попыток входа. Попробуйте снова после {time}. "
        "Если вы забыли пароль, попросите администратора задать новый.",
        "Too many failed sign-in attempts. Try again after {time}. "
        "If you forgot the password, ask the administrator to set a new one.",
    ),
    "login.no_users": Text(
        "Учётных записей ещё нет. Создайте первую на устройстве командой: appliance user add ИМЯ --role admin",
        "There are no accounts yet. Create the first one on the appliance: appliance user add NAME --role admin",
    ),
    # Dashboard: cameras
    "dash.title": Text("Камеры", "Cameras"),
    "dash.summary": Text("Камер в работе: {online} из {total}", "Cameras online: {online} of {total}"),
    "dash.updated": Text(
        "Данные на {time}. Чтобы увидеть новые, обновите страницу.",
        "As of {time}. Reload the page to see newer data.",
    ),
    "dash.no_cameras": Text(
        "Камеры ещё не добавлены. Опишите их в файле настроек (раздел [[cameras]]) и перезапустите устройство.",
        "No cameras yet. Describe them in the settings file ([[cameras]] section) and restart the appliance.",
    ),
    "dash.since": Text("с {time}", "since {time}"),
    "dash.fps": Text("{fps} кадр/с", "{fps} fps"),
    "dash.details": Text("Подробности для установщика", "Details for the installer"),
    "camera.state.starting": Text("Подключается", "Connecting"),
    "camera.state.online": Text("Работает", "Online"),
    "camera.state.reconnecting": Text("Нет связи", "No connection"),
    "camera.state.auth_failed": Text("Неверный логин или пароль камеры", "Camera login rejected"),
    "camera.state.not_found": Text("Видеопоток не найден", "Video stream not found"),
    "camera.state.disabled": Text("Выключена", "Disabled"),
    "camera.hint.starting": Text(
        "Устройство подключается к камере; обычно это занимает несколько секунд.",
        "The appliance is connecting to the camera; this usually takes a few seconds.",
    ),
    "camera.hint.reconnecting": Text(
        "Изображения с камеры нет, запись не идёт. Проверьте, что у камеры есть питание и подключён сетевой "
        "кабель. Устройство переподключается само — запись продолжится, как только связь появится.",
        "There is no picture from the camera and nothing is recorded. Check the camera's power and network "
        "cable. The appliance keeps reconnecting and recording resumes as soon as the camera is back.",
    ),
    "camera.hint.auth_failed": Text(
        "Камера отклонила логин и пароль, запись не идёт. Проверьте логин и пароль этой камеры в файле "
        "настроек (или попросите об этом установщика) и перезапустите устройство.",
        "The camera refused the login and nothing is recorded. Check this camera's username and password in "
        "the settings file (or ask the installer to) and restart the appliance.",
    ),
    "camera.hint.not_found": Text(
        "Камера отвечает, но видеопотока по указанному адресу нет, запись не идёт. Проверьте адрес потока "
        "(main_url) в файле настроек (или попросите об этом установщика) и перезапустите устройство.",
        "The camera answers but has no video stream at the configured address, so nothing is recorded. "
        "Check the stream address (main_url) in the settings file (or ask the installer to) and restart "
        "the appliance.",
    ),
    "camera.hint.disabled": Text(
        "Камера выключена в файле настроек (enabled = false) и не записывается.",
        "The camera is switched off in the settings file (enabled = false) and is not recorded.",
    ),
    # Dashboard: the daemon's components
    "components.title": Text("Части системы", "System components"),
    "components.name": Text("Часть", "Component"),
    "components.state": Text("Состояние", "State"),
    "components.restarts": Text("Перезапуски", "Restarts"),
    "components.started": Text("Запущена", "Started"),
    "components.last_error": Text("Последняя ошибка", "Last error"),
    "components.none": Text("Нет запущенных частей.", "No components are running."),
    "component.state.running": Text("Работает", "Running"),
    "component.state.backoff": Text("Сбой, скоро перезапустится сама", "Crashed, will restart by itself shortly"),
    "component.state.stopped": Text("Остановлена", "Stopped"),
    "component.state.failed": Text("Сбой при остановке", "Failed while stopping"),
    "components.hint": Text(
        "Если перезапуски всё время растут, сообщите установщику или в поддержку: подробности — в системном "
        "журнале (journalctl -u appliance).",
        "If the restarts keep growing, tell the installer or support: the details are in the system log "
        "(journalctl -u appliance).",
    ),
    # Demo inbox
    "inbox.title": Text("Демо-телефон", "Demo phone"),
    "inbox.about": Text(
        "Это демо-телефон. Сюда приходит то, что в магазине пришло бы на телефоны: оповещения владельцу (их "
        "доставляет очередь оповещений через канал «demo-phone», см. «Оповещения») и SMS с кодами для гостей Wi-Fi "
        "(их отправляет клиент SMS.ru портала). Заметки «Камера … в сети» добавляет сам демо-режим: так видно, что "
        "камеры подключились.",
        "This is the demo phone. It gets what a store would send to phones: the owner's alerts (delivered by the "
        "alerts outbox through the channel “demo-phone”, see Alerts) and the Wi-Fi guests' SMS codes (sent by the "
        "portal's SMS.ru client). The “Camera … online” notes come from the demo itself, to show that the cameras "
        "connected.",
    ),
    "inbox.empty": Text(
        "Сообщений пока нет. Оповещение придёт, когда камера заметит движение; SMS — когда гость запросит код.",
        "No messages yet. An alert arrives when a camera sees motion; an SMS when a guest asks for a code.",
    ),
    "inbox.refresh": Text("Обновить", "Refresh"),
    "inbox.image_alt": Text("Снимок с камеры: {title}", "Camera snapshot: {title}"),
    "inbox.clip_label": Text("Видео с камеры: {title}", "Camera video: {title}"),
    "inbox.clip_download": Text("Скачать видео (MP4)", "Download the video (MP4)"),
}

CATALOGUE = merge(errors.MESSAGES, csrf.MESSAGES, _OWN)
