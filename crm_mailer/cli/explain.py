"""`crm-mailer explain`: why a mail would land where it lands (nothing is stored)."""

from __future__ import annotations

import argparse
import json
import sys

from sqlalchemy.ext.asyncio import AsyncEngine

from crm_mailer.cli.output import SafeOutput, evidence_lines
from crm_mailer.cli.shared import add_tenant
from crm_mailer.db.engine import reading, session_factory
from crm_mailer.errors import CrmMailerError
from crm_mailer.explain import explain
from crm_mailer.ingest import IngestConfig
from crm_mailer.settings import Settings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = ("run a message (.eml) through the whole pipeline for a tenant and print each "
            "step's finding and why; nothing is stored")
    parser = commands.add_parser("explain", help=text, description=text)
    add_tenant(parser)
    parser.add_argument("file", type=argparse.FileType("rb"), metavar="FILE.eml",
                        help="the message as received ('-' reads standard input)")
    parser.add_argument("--envelope-sender", metavar="ADDRESS",
                        help="MAIL FROM as the relay sent it (default: the From address)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(run=_explain)


async def _explain(args: argparse.Namespace, settings: Settings, engine: AsyncEngine) -> int:
    with args.file as handle:
        try:
            raw = handle.read()
        except OSError as exc:
            raise CrmMailerError(f"cannot read {args.file.name}: {exc.strerror}") from None
    config = IngestConfig.from_settings(settings)
    async with reading(session_factory(engine)) as session:
        explanation = await explain(session, args.tenant, raw, config,
                                    envelope_sender=args.envelope_sender)
    if args.format == "json":
        sys.stdout.write(json.dumps(explanation.as_json(), ensure_ascii=False, default=str)
                         + "\n")
        return 0
    out = SafeOutput(sys.stdout)
    out.write(f"tenant '{explanation.tenant}': {explanation.outcome} - {explanation.summary}\n")
    for line in evidence_lines(list(explanation.evidence)):
        out.write(line + "\n")
    return 0
