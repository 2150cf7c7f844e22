"""Automations for the overnight batch: tell someone when it fails, and crash runs whose machine died.

    PREFECT_API_URL=http://prefect.internal:4200/api \\
        .venv/bin/python deploy/automations.py --webhook-url https://hooks.slack.com/services/T000/B000/XXXX

Creates (or replaces, by name; safe to run again):

* `voidbatch-nightly-failed`: a flow run tagged `nightly` (the `process-edit` deployment) that ends
  Failed, Crashed or TimedOut posts to the webhook (a `CustomWebhookNotificationBlock`, JSON
  `{"text": ...}`, which Slack, Teams workflows and most chat hooks accept) with the run, its state
  message (which names the failed shots) and a link to the run (set PREFECT_UI_URL on the server,
  or the link reads None).
* `voidbatch-crash-zombie-runs`: a run that was emitting heartbeats and goes silent for three
  heartbeat periods (its worker host died, a pod was evicted, OOM) is marked Crashed, which frees
  its work-pool slot, fires the alert above, and lets the UI "Retry" button (or `prefect flow-run
  retry`) run it again. Heartbeats are on by default (PREFECT_FLOWS_HEARTBEAT_FREQUENCY=180, on the
  machines that run flows); pass the same value here as --heartbeat-seconds.
"""
from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from uuid import UUID

FAILED_NAME = "voidbatch-nightly-failed"
ZOMBIE_NAME = "voidbatch-crash-zombie-runs"
BLOCK_NAME = "voidbatch-nightly-alerts"
FAILED_STATES = ("Failed", "Crashed", "TimedOut")

SUBJECT = "voidbatch {{ flow.name }} run {{ flow_run.name }}: {{ flow_run.state.name }}"
BODY = ("{{ flow_run.state.message }}\n"
        "edit: {{ flow_run.parameters.edit }}  out: {{ flow_run.parameters.out }}\n"
        "{{ flow_run|ui_url }}")


def save_webhook_block(url: str, block_name: str = BLOCK_NAME) -> UUID:
    """A saved CustomWebhookNotificationBlock posting {"text": subject + body} to `url`; its document id."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock(name=block_name, url=url, method="POST",
                                           json_data={"text": "{{subject}}\n{{body}}"})
    return block.save(block_name, overwrite=True)


def failure_automation(block_id: UUID, tag: str = "nightly"):
    """Notify when a run tagged `tag` ends Failed, Crashed or TimedOut."""
    from prefect.automations import Automation
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    return Automation(
        name=FAILED_NAME,
        description=f"Post to the studio webhook when a run tagged '{tag}' fails, crashes or times out.",
        trigger=EventTrigger(
            expect={f"prefect.flow-run.{s}" for s in FAILED_STATES},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{tag}"},
            posture=Posture.Reactive, threshold=1, within=timedelta(0)),
        actions=[SendNotification(block_document_id=block_id, subject=SUBJECT, body=BODY)],
    )


def zombie_automation(heartbeat_seconds: int = 180):
    """Mark Crashed any flow run that stops sending heartbeats for three periods (Prefect's recipe)."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return Automation(
        name=ZOMBIE_NAME,
        description=f"A flow run silent for {3 * heartbeat_seconds} s (three missed heartbeats) is Crashed.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            # a final state also ends the wait: a run that just finished is not a zombie
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive, threshold=1, within=timedelta(seconds=3 * heartbeat_seconds)),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"No heartbeat for {3 * heartbeat_seconds} s: its machine or "
                                            f"process died. Retry the run to resume (finished chunks and "
                                            f"shots are reused).")],
    )


def replace(automation) -> UUID:
    """Create `automation`, deleting earlier ones of the same name first; its id."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        for old in client.read_automations_by_name(automation.name):
            client.delete_automation(old.id)
    return automation.create().id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--webhook-url", default=os.environ.get("VOIDBATCH_ALERT_WEBHOOK"),
                        help="where failure alerts are POSTed (default: $VOIDBATCH_ALERT_WEBHOOK)")
    parser.add_argument("--tag", default="nightly", help="runs with this tag alert on failure (default: nightly)")
    parser.add_argument("--heartbeat-seconds", type=int,
                        default=int(os.environ.get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "180")),
                        help="flow run heartbeat period on the workers (default: 180, Prefect's default)")
    parser.add_argument("--no-zombies", action="store_true", help="skip the zombie-run automation")
    args = parser.parse_args(argv)
    if not args.webhook_url:
        parser.error("--webhook-url (or VOIDBATCH_ALERT_WEBHOOK) is required")
    if args.heartbeat_seconds < 30:
        parser.error("--heartbeat-seconds must be at least 30 (Prefect's minimum heartbeat period)")
    block_id = save_webhook_block(args.webhook_url)
    print(f"{FAILED_NAME}: {replace(failure_automation(block_id, args.tag))} (webhook block {BLOCK_NAME})")
    if not args.no_zombies:
        print(f"{ZOMBIE_NAME}: {replace(zombie_automation(args.heartbeat_seconds))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
