"""People as swarm members: the human subtasks waiting for them, and handing in their conclusions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import select
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from swarmkeep.api.deps import CurrentKey, SessionDep, TemporalDep
from swarmkeep.api.routes.jobs import NOT_FOUND, tenant_job
from swarmkeep.api.schemas import HumanConclusion, HumanTask, HumanTaskList, Problem, SubtaskView
from swarmkeep.api.views import subtask_view
from swarmkeep.messages import HumanAnswer
from swarmkeep.roles import HUMAN
from swarmkeep.store.models import Job, Subtask, SubtaskStatus

router = APIRouter(tags=["human tasks"])


@router.get("/v1/tasks", response_model=HumanTaskList)
async def open_human_tasks(
    session: SessionDep, key: CurrentKey, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> HumanTaskList:
    """Human subtasks of the tenant's jobs that are waiting for a person, oldest deadline first."""
    rows = await session.execute(
        select(Subtask, Job.task)
        .join(Job, Job.id == Subtask.job_id)
        .where(Job.tenant == key.tenant, Subtask.role == HUMAN, Subtask.status == SubtaskStatus.WAITING)
        .order_by(Subtask.deadline, Subtask.id)
        .limit(limit)
    )
    return HumanTaskList(
        items=[
            HumanTask(
                job_id=subtask.job_id,
                subtask_id=subtask.subtask_id,
                task=task,
                instruction=subtask.instruction,
                depends_on=list(subtask.depends_on or []),
                deadline=subtask.deadline,
                links={
                    "complete": f"/v1/jobs/{subtask.job_id}/subtasks/{subtask.subtask_id}/complete",
                    "job": f"/v1/jobs/{subtask.job_id}",
                },
            )
            for subtask, task in rows.all()
        ]
    )


@router.post(
    "/v1/jobs/{job_id}/subtasks/{subtask_id}/complete",
    response_model=SubtaskView,
    responses={**NOT_FOUND, 409: {"model": Problem, "description": "The subtask is not waiting for a person."}},
)
async def complete_human_subtask(
    job_id: str, subtask_id: str, body: HumanConclusion, session: SessionDep, client: TemporalDep, key: CurrentKey
) -> SubtaskView:
    """Hand in a person's conclusion; the workflow checks it (a Temporal update) and the job goes on."""
    await tenant_job(session, key, job_id)
    row = await session.scalar(select(Subtask).where(Subtask.job_id == job_id, Subtask.subtask_id == subtask_id))
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Job {job_id} has no subtask {subtask_id!r}.")
    try:
        await client.get_workflow_handle(job_id).execute_update(
            "complete_subtask", HumanAnswer(subtask_id, body.conclusion, body.completed_by), result_type=str
        )
    except WorkflowUpdateFailedError as error:
        reason = str(error.cause) if error.cause else str(error)
        raise HTTPException(status.HTTP_409_CONFLICT, f"Not accepted: {reason}") from error
    except RPCError as error:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"Job {job_id} is no longer running ({error.message})."
        ) from error
    await session.refresh(row)
    view = subtask_view(row)
    view.status, view.conclusion = "accepted", body.conclusion
    return view
