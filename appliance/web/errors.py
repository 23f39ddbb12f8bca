"""Error pages in the reader's language that say what happened and what to do; never a traceback."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from appliance.web.i18n import Text
from appliance.web.templating import render

log = logging.getLogger(__name__)

# Statuses with their own explanation; any other 4xx gets the generic one.
EXPLAINED_STATUSES = frozenset({400, 403, 404, 405, 413, 429, 500})
# Headers of an HTTP error that the browser still needs on the rendered page.
KEPT_HEADERS = ("Allow", "Retry-After")

MESSAGES = {
    "error.home": Text("На главную", "Go to the home page"),
    "error.400.title": Text("Запрос не понят", "The request was not understood"),
    "error.400.hint": Text(
        "Адрес или данные формы повреждены. Вернитесь назад, обновите страницу и попробуйте снова.",
        "The address or the form data is damaged. Go back, reload the page and try again.",
    ),
    "error.403.title": Text("Доступ запрещён", "Access denied"),
    "error.403.hint": Text(
        "У этой учётной записи нет прав на это действие. Обратитесь к администратору.",
        "This account may not do that. Ask the administrator.",
    ),
    "error.404.title": Text("Страница не найдена", "Page not found"),
    "error.404.hint": Text(
        "Такой страницы здесь нет. Проверьте адрес или перейдите на главную страницу.",
        "There is no such page here. Check the address or go to the home page.",
    ),
    "error.405.title": Text("Так эту страницу открыть нельзя", "This page cannot be opened this way"),
    "error.405.hint": Text(
        "Страница ждёт отправки формы. Вернитесь назад и нажмите кнопку на странице.",
        "The page expects a form to be sent. Go back and use the button on the page.",
    ),
    "error.413.title": Text("Слишком много данных", "Too much data"),
    "error.413.hint": Text(
        "Отправленные данные слишком велики. Сократите их и попробуйте снова.",
        "What was sent is too large. Make it smaller and try again.",
    ),
    "error.429.title": Text("Слишком много запросов", "Too many requests"),
    "error.429.hint": Text(
        "Подождите минуту и попробуйте снова.",
        "Wait a minute and try again.",
    ),
    "error.500.title": Text("Внутренняя ошибка", "Internal error"),
    "error.500.hint": Text(
        "Что-то пошло не так на устройстве. Обновите страницу через минуту; если ошибка повторяется, "
        "перезапустите устройство или сообщите в поддержку — подробности записаны в системный журнал.",
        "Something went wrong on the appliance. Reload the page in a minute; if it happens again, "
        "restart the appliance or call support — the details are in the system log.",
    ),
    "error.other.title": Text("Ошибка", "Error"),
    "error.other.hint": Text(
        "Запрос не выполнен. Вернитесь назад и попробуйте снова.",
        "The request was not completed. Go back and try again.",
    ),
}


class PageError(Exception):
    """An error shown on its own page; `key` names `<key>.title` and `<key>.hint` in the catalogue."""

    def __init__(self, status: int, key: str, **params: object) -> None:
        super().__init__(key)
        self.status = status
        self.key = key
        self.params = params


def _error_page(
    request: web.Request, status: int, key: str | None = None, params: dict[str, object] | None = None
) -> web.Response:
    if key is None:
        key = f"error.{status if status in EXPLAINED_STATUSES else 'other'}"
    context = {"status": status, "key": key, "params": params or {}}
    try:
        return render(request, "error.html", context, status=status)
    except Exception:
        # The error page itself failed (a broken layout): still answer, plainly.
        log.exception("cannot render the error page for HTTP %d", status)
        return web.Response(text=f"HTTP {status}", status=status, content_type="text/plain")


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except PageError as exc:
        return _error_page(request, exc.status, exc.key, exc.params)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _error_page(request, exc.status)
        for name in KEPT_HEADERS:
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return _error_page(request, 500)
