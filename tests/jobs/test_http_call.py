"""The HTTP call job against a real HTTP server on loopback: what it sends, what it records, when
it fails, and what a schedule may not ask of it."""

import pytest

from jobs.http_call import http_call_of
from jobs.tasks import http_call
from scheduler.worker import JobFailed

pytestmark = pytest.mark.django_db


def call(site, path: str = "/hook", **kwargs) -> dict:
    return {"url": site.url("127.0.0.7", path), "allowed_port": site.port, **kwargs}


def test_it_sends_the_method_headers_secret_and_body_and_records_the_answer(fetching, monkeypatch):
    monkeypatch.setenv("JOB_SECRET_OPS_TOKEN", "t0ken-from-the-environment")
    fetching.pages["/hook"] = lambda handler: handler.reply(201, b'{"queued": 3}' + b"x" * 5000,
                                                            Content_Type="application/json")

    output = http_call.apply(kwargs=call(fetching, method="POST", body='{"run": "nightly"}',
                                         headers={"X-Team": "ops"},
                                         secret_headers={"Authorization": "JOB_SECRET_OPS_TOKEN"},
                                         expected_status=[201])).get()

    (path, headers), = fetching.requests
    assert path == "/hook" and headers["X-Team"] == "ops"
    assert headers["Authorization"] == "t0ken-from-the-environment"
    assert fetching.posted == [("/hook", b'{"run": "nightly"}')]
    assert (output["status"], output["method"], output["expected"]) == (201, "POST", "201")
    assert output["answer"].startswith('{"queued": 3}') and len(output["answer"]) == 2000
    assert output["duration_ms"] >= 0
    assert "t0ken" not in str(output)


def test_an_unexpected_status_fails_the_run_with_the_answer_in_its_output(fetching):
    fetching.pages["/hook"] = lambda handler: handler.reply(500, b"database is down")

    with pytest.raises(JobFailed) as failed:
        http_call.apply(kwargs=call(fetching), throw=True).get()

    assert "HTTP 500 where 2xx was expected" in str(failed.value)
    assert failed.value.output["status"] == 500 and failed.value.output["answer"] == "database is down"


def test_a_secret_not_set_on_the_worker_fails_the_run_naming_the_variable(fetching, monkeypatch):
    monkeypatch.delenv("JOB_SECRET_MISSING", raising=False)
    with pytest.raises(JobFailed, match="JOB_SECRET_MISSING .* is not set"):
        http_call.apply(kwargs=call(fetching, secret_headers={"Authorization": "JOB_SECRET_MISSING"}),
                        throw=True).get()
    assert fetching.requests == []


@pytest.mark.parametrize("kwargs, named", [
    ({"url": "http://10.0.0.5/admin"}, "'url' 'http://10.0.0.5/admin' is refused by the outbound gate"),
    ({"url": "file:///etc/passwd"}, "'url' 'file:///etc/passwd' is refused"),
    ({}, "'url' is required"),
    ({"url": "https://example.com/", "method": "TRACE"}, "'method' must be one of"),
    ({"url": "https://example.com/", "secret_headers": {"Authorization": "SECRET_KEY"}},
     "must name an environment variable starting with JOB_SECRET_"),
    ({"url": "https://example.com/", "headers": {"Host": "intranet"}}, "'Host' is not a header a schedule may set"),
    ({"url": "https://example.com/", "headers": {"X-A": "1\r\nX-B: 2"}}, "holds a line break"),
    ({"url": "https://example.com/", "expected_status": [200, 999]}, "'expected_status' must be a list"),
    ({"url": "https://example.com/", "timeout": 0}, "'timeout' must be a number of seconds"),
    ({"url": "https://example.com/", "retries": 3}, "unknown key(s) 'retries'"),
    ({"url": "http://example.com:8080/"}, "port 8080 is not allowed"),
    ({"url": "https://example.com/", "allowed_port": 70000}, "'allowed_port' must be a port number"),
])
def test_what_a_schedule_may_not_ask_is_refused_naming_the_key(kwargs, named):
    found, problems = http_call_of(kwargs)
    assert found is None
    assert any(named in problem for problem in problems), problems


def test_a_refused_address_is_never_called(fetching, settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ()
    with pytest.raises(JobFailed, match="refused by the outbound gate"):
        http_call.apply(kwargs=call(fetching), throw=True).get()
    assert fetching.requests == []


def test_an_address_refusal_says_how_to_reach_a_network_of_ones_own():
    _, problems = http_call_of({"url": "http://127.0.0.5:8899/", "allowed_port": 8899})
    assert problems == ["'url' 'http://127.0.0.5:8899/' is refused by the outbound gate: 127.0.0.5 is in "
                        "127.0.0.0/8: loopback (RFC 1122). A network of your own is reached by listing it in "
                        "OUTBOUND_ALLOWED_NETWORKS."]
    _, problems = http_call_of({"url": "ftp://example.com/"})
    assert "OUTBOUND_ALLOWED_NETWORKS" not in problems[0]
