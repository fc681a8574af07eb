"""`DeliverCallbackWorkflow`: deliver one signed callback, retrying with exponential backoff for hours.

It runs as an abandoned child of the job's workflow, so a receiver that is down keeps only this small
workflow open, never the job.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from swarmkeep.messages import CallbackInput


@workflow.defn
class DeliverCallbackWorkflow:
    """Send one callback message until the receiver takes it or the retry window closes."""

    @workflow.run
    async def run(self, message: CallbackInput) -> bool:
        policy = message.policy
        try:
            await workflow.execute_activity(
                "deliver_callback",
                message,
                schedule_to_close_timeout=timedelta(hours=policy.retry_hours),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=policy.initial_interval_s),
                    backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=policy.max_interval_s),
                    non_retryable_error_types=["UnsafeCallbackURL", "NoCallbackURL"],
                ),
                summary=f"callback {message.event_type}",
            )
        except ActivityError:
            workflow.logger.warning("callback %s for %s was not delivered", message.webhook_id, message.job_id)
            return False
        return True
