"""A private Postfix instance for the tests: its own config, queue and log in a temp dir.

It relays only crm@<tenant host> to crm_mailer through a transport map and discards
everything else; it has no SMTP server of its own (mail comes in through `sendmail`).
Retries wait an hour, so a deferred message stays queued until the test flushes it.
Postfix starts as root and drops to its `postfix` user, as in production.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

POSTFIX = shutil.which("postfix", path="/usr/sbin:/usr/bin")
SENDMAIL = "/usr/sbin/sendmail"

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.test.example
mydomain = test.example
inet_interfaces = loopback-only
inet_protocols = ipv4
mydestination =
relayhost =
alias_maps =
alias_database =
transport_maps = inline:{{ {transport} }}
default_transport = discard:this test relays nothing else
maillog_file_prefixes = {dir}
maillog_file = {dir}/maillog
smtp_tls_security_level = none
smtp_host_lookup = native
minimal_backoff_time = 1h
maximal_backoff_time = 1h
queue_run_delay = 1h
biff = no
"""

# Only the services this instance needs: pickup from sendmail, cleanup, the queue manager,
# the SMTP client and what bounces and logs.
MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    """A private instance relaying `recipients` to 127.0.0.1:`port`."""

    def __init__(self, recipients: Iterable[str], port: int) -> None:
        if POSTFIX is None:
            raise RuntimeError("Postfix is not installed (scripts/test installs the Debian "
                               "package postfix)")
        self.dir = Path(tempfile.mkdtemp(prefix="crm-mailer-postfix-"))
        self.dir.chmod(0o755)  # Postfix's own user works in queue/ and data/
        self.conf = self.dir / "conf"
        self.conf.mkdir()
        for name in ("queue", "data"):
            (self.dir / name).mkdir()
        shutil.chown(self.dir / "data", "postfix")
        transport = " ".join(f"{r}=smtp:[127.0.0.1]:{port}" for r in recipients)
        (self.conf / "main.cf").write_text(MAIN_CF.format(dir=self.dir, transport=transport))
        (self.conf / "master.cf").write_text(MASTER_CF)
        self.log = self.dir / "maillog"

    def _postfix(self, *args: str) -> None:
        subprocess.run([str(POSTFIX), "-c", str(self.conf), *args], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=60)

    def start(self) -> None:
        """Start, or say why not (Postfix tells its log, not stderr) and clean up."""
        try:
            self._postfix("start")
        except subprocess.CalledProcessError:
            log = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
            shutil.rmtree(self.dir, ignore_errors=True)
            raise RuntimeError(f"Postfix did not start:\n{log}") from None

    def stop(self) -> None:
        self._postfix("stop")

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.dir, ignore_errors=True)

    def sendmail(self, message: bytes, sender: str) -> None:
        """Submit as a mail client does: recipients from the headers (-t), Bcc included."""
        subprocess.run([SENDMAIL, "-C", str(self.conf), "-t", "-f", sender], input=message,
                       check=True, capture_output=True, timeout=60)

    def flush(self) -> None:
        subprocess.run(["/usr/sbin/postqueue", "-c", str(self.conf), "-f"], check=True,
                       capture_output=True, timeout=60)

    def queued(self) -> str:
        """`postqueue -p`: the queue, with each deferred recipient's last reply."""
        return subprocess.run(["/usr/sbin/postqueue", "-c", str(self.conf), "-p"], check=True,
                              capture_output=True, text=True, timeout=60).stdout

    def wait_for_log(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """The first line of the mail log matching `pattern`, once it is there."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace") if self.log.exists() else ""
            found = re.search(pattern, text)
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in the Postfix log:\n{text[-3000:]}")
