import socket

from tests.conftest import run_manage, subprocess_env


def test_the_run_command_names_web_bind_when_its_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_manage("launch", env=subprocess_env(DATA_DIR=str(tmp_path), WEB_BIND=f"127.0.0.1:{port}"))
    assert result.returncode == 1
    assert f"WEB_BIND=127.0.0.1:{port} cannot be used (Address already in use)" in result.stderr
    # It stopped before starting anything: no embedded Redis was left behind.
    assert not (tmp_path / "redis").exists()
