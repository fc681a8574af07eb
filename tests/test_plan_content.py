"""Plans that are the task's own: copied examples and off-topic subtasks are found, duplicates of a last plan are
merged before anything runs, and answers that fall into a loop are cut. Recorded outputs of the real SmolLM2-135M
(tests/support/recorded/planner_smollm2.json, see its README) keep the guards honest about that model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from swarmkeep.activities.planner import parse_plan
from swarmkeep.activities.prompts import PROMPT_EXAMPLES, plan_messages, plan_schema
from swarmkeep.activities.subagent import SubagentActivities
from swarmkeep.messages import SubagentInput
from swarmkeep.text_loops import cut_loop
from swarmkeep.workflows.plan_guards import (
    PlannedSubtask,
    mentions_subject,
    merge_duplicates,
    plan_findings,
    subject_words,
)
from tests.support.scripted_llm import Script, plan_json

RECORDED = json.loads((Path(__file__).parent / "support" / "recorded" / "planner_smollm2.json").read_text())
DEMO_TASK = (
    "Plan a one-day workshop on durable workflows: research the topic, outline the agenda, and draft the "
    "invitation email."
)


def planned(content: str) -> list[PlannedSubtask]:
    subtasks, problem = parse_plan(content)
    assert problem is None
    return [PlannedSubtask(s["id"], s["instruction"], tuple(s["depends_on"]), s["role"]) for s in subtasks]


def findings_of(content: str, task: str) -> list[str]:
    return plan_findings(planned(content), task=task, examples=PROMPT_EXAMPLES)


def test_the_old_prompts_copied_example_plan_is_rejected() -> None:
    recorded = RECORDED["old_prompt"]["demo"]
    findings = findings_of(recorded["content"], recorded["task"])
    assert "subtask 's1' copies the prompt's example ('List the key facts about X.')" in findings[0]
    assert any("'s4' does not mention the task's subject (day, workshop, durable, workflows" in f for f in findings)
    assert any("same work" in f for f in findings)
    for name in ("solar", "cache"):
        assert any("copies the prompt's example" in f for f in findings_of(**_of(RECORDED["old_prompt"][name])))


def _of(recorded: dict[str, Any]) -> dict[str, str]:
    return {"content": recorded["content"], "task": recorded["task"]}


def test_a_plan_that_shares_no_word_with_the_task_is_rejected() -> None:
    plan = plan_json(
        [
            {"id": "s1", "role": "researcher", "instruction": "Research the workshop venues.", "depends_on": []},
            {"id": "s2", "role": "writer", "instruction": "Write the answer for this task.", "depends_on": []},
            {"id": "s3", "role": "writer", "instruction": "Draft the invitations.", "depends_on": []},
        ]
    )
    findings = findings_of(plan, DEMO_TASK)
    assert findings == [
        "subtask 's2' does not mention the task's subject (day, workshop, durable, workflows, agenda, ...): "
        "name it in every instruction"
    ]  # "workshops"/"workshop" and "invitations"/"invitation" match; "research", "write" say nothing
    # The real model, asked for a report with no list of parts, dropped the subject from two instructions.
    solar = RECORDED["new_prompt"]["solar"]
    assert [f.split("'")[1] for f in findings_of(**_of(solar))] == ["s2", "s3"]


def test_subject_words_and_their_matching() -> None:
    assert subject_words(DEMO_TASK) == ["day", "workshop", "durable", "workflows", "agenda", "invitation", "email"]
    assert mentions_subject("Book rooms for the workshops.", ["workshop"])
    assert mentions_subject("Describe the workflow engine.", ["workflows"])
    assert not mentions_subject("Write a summary of X.", subject_words(DEMO_TASK))
    # A person's subtask is the caller's: never judged against the task.
    person = [PlannedSubtask("approve", "Approve the budget.", (), "human")]
    assert plan_findings(person, task=DEMO_TASK, examples=PROMPT_EXAMPLES) == []


def test_the_new_prompts_real_plan_for_the_demo_task_passes_the_guards() -> None:
    recorded = RECORDED["new_prompt"]["demo"]
    assert recorded["messages"] == plan_messages(DEMO_TASK, 3, 5, None)  # the fixture is of the prompt as it is
    subtasks = planned(recorded["content"])
    assert len(subtasks) >= 3
    assert findings_of(recorded["content"], DEMO_TASK) == []
    assert all(mentions_subject(s.instruction, subject_words(DEMO_TASK)) for s in subtasks)
    assert len({s.instruction for s in subtasks}) == len(subtasks)
    assert findings_of(**_of(RECORDED["new_prompt"]["cache"])) == []


def test_no_prompt_shows_an_example_a_plan_could_copy() -> None:
    system, user = (m["content"] for m in plan_messages(DEMO_TASK, 3, 5, "feedback"))
    assert not any(example in system for example in PROMPT_EXAMPLES) and "X." not in system + user
    # What the user message shows to start from is the task's own words, each part naming its subject.
    sketch = json.loads(user.split("(improve it): ")[1].split("\n\n")[0])["subtasks"]
    assert [s["instruction"].split(" for this task")[0] for s in sketch] == [
        "Research the topic",
        "Outline the agenda",
        "Draft the invitation email",
    ]
    assert plan_schema(3, 5)["properties"]["subtasks"]["maxItems"] == 5  # type: ignore[index]


def test_near_duplicates_merge_into_their_first_member() -> None:
    subtasks = [
        PlannedSubtask("s1", "Drape the slides for the durable workflows workshop.", ()),
        PlannedSubtask("s2", "Research durable workflows engines.", ()),
        PlannedSubtask("s3", "Drape the slides for the durable workflows workshop.", ("s2",)),
        PlannedSubtask("s4", "Write the invitation email using the slides.", ("s3", "s1")),
        PlannedSubtask("s5", "Drape the slides for the durable workflows workshop!", ("s1",)),
    ]
    merged = merge_duplicates(subtasks)
    assert merged.merged == [{"kept": "s1", "merged": ["s3", "s5"]}]
    assert [(s.id, s.depends_on) for s in merged.subtasks] == [("s1", ("s2",)), ("s2", ()), ("s4", ("s1",))]
    assert merge_duplicates(subtasks[:2]).merged == []


def test_a_merge_that_would_close_a_cycle_keeps_only_earlier_dependencies() -> None:
    subtasks = [
        PlannedSubtask("a", "Outline the durable workflows workshop agenda.", ()),
        PlannedSubtask("b", "Research the speakers for the agenda.", ("a",)),
        PlannedSubtask("c", "Outline the durable workflows workshop agenda.", ("b",)),
    ]
    merged = merge_duplicates(subtasks)
    assert [(s.id, s.depends_on) for s in merged.subtasks] == [("a", ()), ("b", ("a",))]


def test_the_real_models_looping_synthesis_is_cut_where_the_loop_starts() -> None:
    text = RECORDED["synthesis"]["content"]
    cut, looped = cut_loop(text)
    assert looped and len(cut) < len(text) / 3
    assert cut.endswith("2. Delicate Workflows: What are the latest trends and challenges?")
    assert cut.count("What are the latest trends and challenges?") == 1
    assert text.startswith(cut)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Intro. " + "The plan is ready now. " * 3 + "The plan is re", "Intro. The plan is ready now."),
        ("- Drape the slides for X\n- Drape the slides for X\n- Drape the slides for X\n", "- Drape the slides for X"),
        ("Ids: 1.1.1.1.1.1.1.1.1.1.1.1.1.1", "Ids: 1."),
    ],
)  # fmt: skip
def test_looping_text_is_cut(text: str, expected: str) -> None:
    assert cut_loop(text) == (expected, True)


def test_a_long_sentence_said_again_with_others_between_is_a_loop() -> None:
    # From the real SmolLM2's synthesis of the demo task (a fresh `make demo`): paragraphs that end on the same
    # sentence, then a paragraph said twice.
    echo = "I'm looking forward to seeing the excitement on their faces as they prepare to attend this event."
    again = f"I'm really proud of everyone involved and grateful to support them every step of the way. {echo}"
    text = f"The workshop is an opportunity to share our work.\n\nWe will promote it. {echo}\n\n{again}\n\n{again}\n"
    cut, looped = cut_loop(text)
    assert looped and cut == (
        "The workshop is an opportunity to share our work.\n\nWe will promote it. "
        f"{echo}\n\nI'm really proud of everyone involved and grateful to support them every step of the way."
    )
    lines = [line for line in cut.splitlines() if line.strip()]
    assert len(lines) == len(set(lines))


@pytest.mark.parametrize(
    "text",
    [
        "First point is good. Second point is different. Third one too.",
        "Yes. Yes. Yes. Yes.",  # too short to be a loop rather than emphasis
        "Version 2.5 is out.\n1. Step one here\n2. Step two here\n3. Step three here",
        "The plan is ready. The plan is ready. Now the email.",  # said twice, not a loop
    ],
)
def test_text_that_does_not_loop_is_kept(text: str) -> None:
    assert cut_loop(text) == (text, False)


def test_a_sub_agents_looping_conclusion_is_cut() -> None:
    request = SubagentInput(job_id="j", subtask_id="s1", max_steps=2, conclusion_chars=500)
    answer = "Notes.\nCONCLUSION: The agenda has a lab. " + "The lab covers retries. " * 20
    assert SubagentActivities._conclusion(request, answer) == "The agenda has a lab. The lab covers retries."
    assert SubagentActivities._looped_conclusion(request, answer)[1]
    assert SubagentActivities._looped_conclusion(request, "CONCLUSION: Fine.") == ("Fine.", False)


# --- the workflow, on the scripted model ---------------------------------------------------------------


def duplicate_plan(task_word: str) -> str:
    same = f"Draft the {task_word} slides for the workshop."
    return plan_json(
        [
            {"id": "s1", "role": "writer", "instruction": f"Do part s1. Research the {task_word}.", "depends_on": []},
            {"id": "s2", "role": "slides", "instruction": f"Do part s2. {same}", "depends_on": []},
            {"id": "s3", "role": "slides", "instruction": f"Do part s2. {same}", "depends_on": ["s1"]},
            {"id": "s4", "role": "writer", "instruction": f"Do part s4. Sum up the {task_word}.", "depends_on": ["s3"]},
        ]
    )  # fmt: skip


async def test_duplicates_left_in_the_re_plan_are_merged_before_anything_runs(swarm_factory) -> None:
    swarm = await swarm_factory()
    looping = "The workshop answer. " + "Every team needs durable workflows. " * 12
    swarm.llm.reset(Script(plans=[duplicate_plan("workflows")], steps_to_conclude=1, synthesis=looping))
    job_id = await swarm.submit("Plan a workshop on durable workflows.")
    job = await swarm.wait(job_id)
    assert job["status"] == "succeeded", job
    metrics: dict[str, Any] = job["metrics"]  # type: ignore[assignment]
    assert metrics["plan_merged"] == [{"kept": "s2", "merged": ["s3"]}]
    assert any("'s2' and 's3' do the same work" in f for f in metrics["plan_findings"])
    assert metrics["loops_cut"] == ["synthesis"]
    assert job["result"]["synthesis"] == "The workshop answer. Every team needs durable workflows."  # type: ignore[index]
    subtasks = {s["id"]: s for s in job["subtasks"]}  # type: ignore[union-attr]
    assert sorted(subtasks) == ["s1", "s2", "s4"]  # the stored plan is the merged one
    assert subtasks["s2"]["depends_on"] == ["s1"] and subtasks["s4"]["depends_on"] == ["s2"]
    assert len(swarm.llm.calls("plan")) == 2 and len(swarm.llm.calls("subagent")) == 3


# --- live: the real local model -------------------------------------------------------------------------


@pytest.mark.local_model
async def test_the_real_model_plans_the_demo_task_within_the_guards(tmp_path: Path) -> None:
    pytest.importorskip("vllm")
    from swarmkeep.inference.client import LLMClient
    from swarmkeep.inference.local_model import LocalModelServer, prepare_local_model
    from swarmkeep.services.process import free_port

    model = prepare_local_model(Path("~/.cache/swarmkeep/models").expanduser())
    with LocalModelServer(model, port=free_port(), log_file=tmp_path / "vllm.log") as server:
        llm = LLMClient(base_url=server.base_url, api_key="", model=server.served_model_name, timeout_s=300)
        reply = await llm.chat(
            plan_messages(DEMO_TASK, 3, 5, None),
            max_tokens=1500,
            response_format={"type": "json_schema", "json_schema": {"name": "plan", "schema": plan_schema(3, 5)}},
            temperature=0.0,
        )
    assert len(planned(reply.content)) >= 3
    assert findings_of(reply.content, DEMO_TASK) == []
