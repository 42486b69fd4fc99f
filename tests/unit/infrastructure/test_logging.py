import io
import json
import logging

from infrastructure.grpc.context import RequestContext, request_scope
from infrastructure.logging import JsonFormatter, configure_logging


def test_json_lines_carry_request_id_and_fields():
    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    configure_logging("DEBUG", stream=stream)
    try:
        with request_scope(RequestContext(request_id="rid",
                                          traceparent="00-" + "c" * 32 + "-" + "d" * 16 + "-01")):
            logging.getLogger("t").info("hello %s", "world", extra={"fields": {"n": 1}})
            try:
                raise ValueError("x")
            except ValueError:
                logging.getLogger("t").exception("failed")
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    first, second = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert first["message"] == "hello world" and first["n"] == 1
    assert first["x_request_id"] == "rid" and first["trace_id"] == "c" * 32
    assert first["level"] == "INFO" and first["logger"] == "t"
    assert "ValueError" in second["exception"]


def test_formatter_outside_a_request_has_no_ids():
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "m", (), None)
    line = json.loads(JsonFormatter().format(record))
    assert "request_id" not in line


def test_every_line_names_the_service_and_the_process():
    import os

    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    configure_logging("INFO", service="query_service", stream=stream)
    try:
        logging.getLogger("t").info("started")
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    line = json.loads(stream.getvalue())
    assert (line["service"], line["pid"]) == ("query_service", os.getpid())
