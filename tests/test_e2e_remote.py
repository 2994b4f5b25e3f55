"""Protected mode and credentials in clear, from a client that is not on the server's machine.

tests/remote_peer.py runs the real ``twistd tinytcp`` and its clients inside a network
namespace of their own (``unshare -n``, as root), where the client's address is 192.0.2.1,
not loopback.  CI runs these as root (.ci/run sets TINYTCP_REQUIRE_NETNS so that they fail
rather than skip there); elsewhere they need root and ``unshare``/``ip`` (util-linux, iproute2).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import unittest

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MISSING = (
    None
    if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip")
    else "needs root, unshare and ip for a network namespace of its own"
)
SKIP = None if os.environ.get("TINYTCP_REQUIRE_NETNS") else MISSING


def from_elsewhere(options: list[str], lines: list[str]) -> dict[str, list[str]]:
    """Run tests/remote_peer.py in a new network namespace: what the remote and loopback clients got."""
    done = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "tests.remote_peer", *options],
        input="\n".join(lines),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@unittest.skipIf(SKIP, SKIP)
class RemotePeerTests(SynchronousTestCase):
    def test_protected_mode_turns_a_remote_client_away_and_serves_a_local_one(self) -> None:
        got = from_elsewhere([], ["ECHO hi"])
        self.assertEqual(len(got["remote"]), 1)
        self.assertTrue(got["remote"][0].startswith("ERROR DENIED protected mode:"), got["remote"])
        self.assertTrue(got["loopback"][0].startswith("WELCOME"), got["loopback"])
        self.assertEqual(got["loopback"][1:], ["ECHO hi"])

    def test_credentials_in_clear_from_elsewhere_are_refused(self) -> None:
        options = ["--no-protected-mode", "--allow-register", "--bcrypt-rounds", "4"]
        got = from_elsewhere(options, ["REGISTER ann correct-horse-1", "ECHO after"])
        self.assertEqual(got["remote"][1:], ["ERROR TLS_REQUIRED", "ECHO after"])
        self.assertEqual(got["loopback"][1:], ["REGISTER ann", "ECHO after"])

    def test_an_operator_may_allow_them(self) -> None:
        options = ["--no-protected-mode", "--allow-register", "--allow-plaintext-login", "--bcrypt-rounds", "4"]
        got = from_elsewhere(options, ["REGISTER bob correct-horse-2"])
        self.assertEqual(got["remote"][1:], ["REGISTER bob"])
