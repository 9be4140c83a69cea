"""Guide 003 item 25, end to end in process: a real TLS server on 127.0.0.1 presents a
certificate (trustme) 10 days from expiry, the ``tls`` check warns, the warning's firing
starts ``cert-renewal``, which "renews" (a new certificate in place of the old, as certbot
writes it), "reloads nginx" and runs the check again: ok, and the alert resolves."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme

from tests.helpers import load_text
from upkeep.alerting.manager import AlertManager
from upkeep.engine.remediation import Remediator
from upkeep.engine.runbooks import RunbookExecutor
from upkeep.engine.runner import CheckRunner
from upkeep.io.http import HttpClient
from upkeep.store.alerts import AlertState
from upkeep.store.runs import RunStatus, new_instance_id
from upkeep.store.store import Store

PY = sys.executable


@contextlib.asynccontextmanager
async def tls_server(chain: Path) -> AsyncIterator[int]:
    """Serve TLS on 127.0.0.1 with the certificate and key in ``chain`` as the file is at
    each handshake (what a reloaded nginx presents); yield the port."""

    async def handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(chain)
        try:
            await writer.start_tls(context)
            await reader.read()
        except (OSError, ssl.SSLError):
            pass  # the probe hangs up once it has the certificate
        finally:
            writer.close()

    server = await asyncio.start_server(handshake, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def test_a_certificate_near_expiry_is_renewed_by_the_runbook_its_warning_starts(
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    now = datetime.now(UTC)
    expiring = ca.issue_cert("localhost", not_after=now + timedelta(days=10))
    renewed = ca.issue_cert("localhost", not_after=now + timedelta(days=90))
    live, staged = tmp_path / "live.pem", tmp_path / "renewed.pem"
    expiring.private_key_and_cert_chain_pem.write_to_path(str(live))
    renewed.private_key_and_cert_chain_pem.write_to_path(str(staged))
    reloads = tmp_path / "reloads"
    async with tls_server(live) as port:
        loaded = load_text(
            tmp_path,
            f"""\
targets:
  domain-cert: {{kind: tls, host: 127.0.0.1, port: {port}, server_name: localhost, ca_file: ca.pem}}
checks:
  certificate-expiry:
    target: domain-cert
    warn: days_left < 30
    crit: days_left < 0 or not valid
    severity: P3
runbooks:
  cert-renewal:
    on_alert: {{match: {{checks: [certificate-expiry]}}, max_runs: 1, per: 1d, cooldown: 6h}}
    steps:
      - name: certbot renew
        command: ["{PY}", "-c", "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])", "{staged}", "{live}"]
      - name: reload nginx
        command: ["{PY}", "-c", "import sys; open(sys.argv[1], 'a').write('reload\\\\n')", "{reloads}"]
      - checks: {{names: [certificate-expiry]}}
""",
        )
        store = Store.open("sqlite:///.upkeep/upkeep.db", tmp_path)
        http = HttpClient()
        try:
            manager = AlertManager(loaded, store)
            checks = CheckRunner(redactor=loaded.redactor, http=http)
            owner = new_instance_id()
            store.runs.register_instance(owner, "leader")
            running: dict[str, asyncio.Task[None]] = {}
            remediator = Remediator(
                lambda: loaded,
                store,
                executor=lambda: RunbookExecutor(
                    loaded, store, http=http, checks=checks, owner=owner, alerts=manager
                ),
                running=running,
            )

            # The schedule's run of the check: a warning, whose firing asks for the runbook.
            first = await checks.run_one(loaded.checks["certificate-expiry"])
            assert first.status.label == "warning", first.message
            assert first.metrics["days_left"] in (9, 10)
            manager.record([first])
            [alert] = store.alerts.list_alerts()
            assert alert.state == AlertState.FIRING

            [decision] = await remediator.step()
            assert decision.started is not None
            await decision.started
            [run] = store.runs.list_runs(runbook="cert-renewal")
            run = store.runs.get_run(run.id) or run
            assert run.status == RunStatus.SUCCEEDED, run.message
            assert (run.trigger, run.triggered_by, run.alert_id) == (
                "alert",
                f"alert:{alert.id} certificate-expiry",
                alert.id,
            )
            assert reloads.read_text() == "reload\n"
            assert run.steps[2].status == "ok", run.steps[2].output

            # The check's run inside the runbook saw the renewed certificate and resolved it.
            resolved = store.alerts.get(alert.id)
            assert resolved is not None and resolved.state == AlertState.RESOLVED
            await remediator.step()
            kinds = [(e.kind, e.detail) for e in store.alerts.events(alert.id)]
            assert ("remediation", f"runbook cert-renewal started: run {run.id}") in kinds
            assert kinds[-1] == (
                "remediation",
                f"run {run.id} of runbook cert-renewal succeeded: 3 step(s) done",
            )
            again = await checks.run_one(loaded.checks["certificate-expiry"])
            assert again.status.label == "ok"
            assert int(again.metrics["days_left"]) >= 89
        finally:
            await http.close()
            store.close()
