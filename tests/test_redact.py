"""Secrets never reach the logs: URLs are masked, registered secrets are replaced."""

from __future__ import annotations

import io
import json
import logging

import pytest

from appliance.logs import SECRETS, JsonFormatter, RedactingFilter
from appliance.redact import mask_text, mask_url


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("rtsp://admin:pa55@10.0.0.2:554/h264", "rtsp://admin:***@10.0.0.2:554/h264"),
        ("rtsp://10.0.0.2/h264", "rtsp://10.0.0.2/h264"),
        ("rtsp://admin:p%40ss@[fe80::1]/x", "rtsp://admin:***@[fe80::1]/x"),
        ("https://sms.ru/sms/send?api_id=ABCDEF&to=7900", "https://sms.ru/sms/send?api_id=***&to=7900"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_text_in_library_messages() -> None:
    text = "Could not open rtsp://admin:hunter2@cam/1: 401; token=abc"
    assert mask_text(text) == "Could not open rtsp://admin:***@cam/1: 401; token=abc"
    assert mask_text("bot token abcdef123", ("abcdef123",)) == "bot token ***"


def test_log_records_are_redacted() -> None:
    SECRETS.add("Zebra-Secret-77")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("open %s failed", "rtsp://u:Zebra-Secret-77@h/1", extra={"detail": "pw Zebra-Secret-77"})
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert "Zebra-Secret-77" not in line
    doc = json.loads(line)
    assert doc["msg"] == "open rtsp://u:***@h/1 failed" and doc["detail"] == "pw ***"
