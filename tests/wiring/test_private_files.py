"""wiring.private_files: the data folder's owner-only files, never seen half written."""

import threading

from wiring.private_files import private_file_write


def test_a_file_written_again_and_again_is_read_whole_every_time_and_stays_private(tmp_path):
    # As the embedded Redis's URL file at each restart, read meanwhile by a command starting.
    path = tmp_path / "url"
    private_file_write(path, "redis://:first@127.0.0.1:1/0")
    urls = [f"redis://:{n:04d}@127.0.0.1:1/0" for n in range(300)]
    writing = threading.Thread(target=lambda: [private_file_write(path, url) for url in urls])
    read = set()
    writing.start()
    while writing.is_alive():
        read.add(path.read_text())
    writing.join()
    assert read <= {"redis://:first@127.0.0.1:1/0", *urls}  # never empty, never part of one
    assert path.read_text() == urls[-1]
    assert path.stat().st_mode & 0o077 == 0
    assert [entry.name for entry in tmp_path.iterdir()] == ["url"]  # no draft left behind


def test_unless_present_the_first_text_stays(tmp_path):
    path = tmp_path / "secret_key"
    private_file_write(path, "first", unless_present=True)
    private_file_write(path, "second", unless_present=True)
    assert path.read_text() == "first"
    assert [entry.name for entry in tmp_path.iterdir()] == ["secret_key"]
