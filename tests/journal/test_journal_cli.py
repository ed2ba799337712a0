"""python -m sagakit recover: the command a person runs after a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import journal_service
from journal_support import HERE, Children, damaged_journal


def sagakit_command(*arguments: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join([str(HERE), environment.get("PYTHONPATH", "")])
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "sagakit", *map(str, arguments)], capture_output=True, text=True,
                          env=environment, timeout=120)


class TestRecoverCommand:
    def test_it_rolls_back_what_a_crash_left_and_then_finds_nothing(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        children.run("once", journal_file, service, env={journal_service.EXIT_AT: "ship:after"}, expect=(17,))
        dry = sagakit_command("recover", "--journal", journal_file, "journal_service:order", "--dry-run")
        assert dry.returncode == 0 and "interrupted" in dry.stdout and "nothing changed" in dry.stdout
        assert journal_service.items(service) != []
        done = sagakit_command("recover", "--journal", journal_file, "journal_service:order")
        assert done.returncode == 0, done.stderr
        assert " order  compensated" in done.stdout and "1 run(s) recovered" in done.stdout
        assert journal_service.items(service) == []
        again = sagakit_command("recover", "--journal", journal_file, "journal_service:order_saga")
        assert again.returncode == 0 and again.stdout.strip() == "nothing to recover"

    def test_a_failed_compensation_exits_1_and_names_the_run(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        children.run("once", journal_file, service, env={journal_service.EXIT_AT: "ship:before"}, expect=(17,))
        result = sagakit_command("recover", "--journal", journal_file, "journal_service:order",
                                 env={journal_service.BROKEN: "reserve"})
        assert result.returncode == 1
        assert "compensation_failed  NEEDS ATTENTION" in result.stdout and "reserve" in result.stdout

    def test_usage_errors_exit_2_with_what_is_wrong(self, journal_file: Path, tmp_path: Path) -> None:
        cases = {
            "nosuchmodule:order": "cannot import module 'nosuchmodule'",
            "journal_service:nothing": "module 'journal_service' has no attribute 'nothing'",
            "journal_service": "expected module:attribute",
            "journal_service:SLOW": "expected a sagakit.Saga",
        }
        for spec, message in cases.items():
            result = sagakit_command("recover", "--journal", journal_file, spec)
            assert result.returncode == 2 and message in result.stderr, (spec, result.stderr)
        missing = sagakit_command("recover", "--journal", tmp_path / "no" / "j.db", "journal_service:order")
        assert missing.returncode == 2 and "does not exist; create it first" in missing.stderr
        assert sagakit_command("recover", "journal_service:order").returncode == 2  # --journal is required
        empty = sagakit_command("recover", "--journal", "", "journal_service:order")
        assert empty.returncode == 2 and "--journal: expected a file path" in empty.stderr
        assert "Traceback" not in empty.stderr

    def test_a_damaged_journal_exits_2_with_one_line_naming_the_run(
        self, journal_file: Path, service: str, children: Children
    ) -> None:
        """No traceback: one line naming the file and the damaged run; the other runs are rolled back."""
        _, broken, _ = damaged_journal(children, journal_file, service)
        result = sagakit_command("recover", "--journal", journal_file, "journal_service:order")
        assert result.returncode == 2, result.stderr
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"sagakit recover: journal {journal_file}: run {broken} is damaged")
        assert {run_id for _, run_id, _ in journal_service.items(service)} == {broken}


def test_recover_prints_no_secret_of_a_failed_compensation(
    journal_file: Path, service: str, children: Children
) -> None:
    """The recover command's NEEDS ATTENTION line masks an API key, a bearer token and a card number."""
    children.run("once", journal_file, service, env={journal_service.EXIT_AT: "ship:before"}, expect=(17,))
    careless = " (api.key=sk_live_Abc123 Authorization: Bearer eyJhbGciOi.xyz card 4111111111111111.)"
    result = sagakit_command("recover", "--journal", journal_file, "journal_service:order",
                             env={journal_service.BROKEN: "reserve", journal_service.BROKEN_SAYS: careless})
    assert result.returncode == 1
    assert "NEEDS ATTENTION: " in result.stdout and "reserve service is down" in result.stdout
    for secret in ("sk_live_Abc123", "eyJhbGciOi", "4111111111111111"):
        assert secret not in result.stdout + result.stderr
    assert result.stdout.count("[REDACTED]") == 3
