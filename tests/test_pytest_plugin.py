"""The pytest plugin, exercised in real pytest sessions (pytester)."""

from __future__ import annotations

import re

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(120)

RACE = '''
import pytest
import yieldloop as yl


@pytest.mark.yieldloop
async def test_counter():
    state = {"n": 0}

    async def inc(delay):
        for _ in range(delay):
            await yl.checkpoint()
        x = state["n"]
        await yl.checkpoint()
        state["n"] = x + 1

    async with yl.TaskGroup() as tg:
        tg.spawn(inc, 0)
        tg.spawn(inc, 3)
    assert state["n"] == 2, "lost update"
'''


def test_async_and_generator_tests_run_with_clock_fixtures(pytester):
    pytester.makepyfile(
        '''
import pytest
import yieldloop as yl

@pytest.mark.yieldloop
async def test_autojump(autojump_clock):
    await yl.sleep(3600)
    assert yl.current_time() == 3600

@pytest.mark.yieldloop
async def test_manual(virtual_clock):
    async with yl.TaskGroup() as tg:
        done = []
        async def sleeper():
            await yl.sleep(5)
            done.append(yl.current_time())
        tg.spawn(sleeper)
        await yl.checkpoint()
        virtual_clock.jump(5)
    assert done == [5]

@pytest.mark.yieldloop
def test_generator():
    yield ("sleep", 0)
    t = yield ("current_time",)
    assert t >= 0

@pytest.mark.yieldloop
@pytest.mark.parametrize("n", [1, 2, 3])
async def test_params(n, tmp_path):
    await yl.checkpoint()
    assert n in (1, 2, 3) and tmp_path.exists()

@pytest.mark.yieldloop
async def test_fails():
    await yl.checkpoint()
    raise ValueError("boom")
'''
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines(["*ValueError: boom*"])


def test_unmarked_async_tests_are_left_alone_in_strict_mode(pytester):
    pytester.makepyfile(
        '''
async def test_unmarked():
    pass
'''
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "ignore")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) == 0


def test_auto_mode_runs_every_async_test(pytester):
    pytester.makeini("[pytest]\nyieldloop_mode = auto\n")
    pytester.makepyfile(
        '''
import yieldloop as yl

async def test_unmarked():
    assert (await yl.sleep(0)) is None
'''
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_bad_mode_is_a_usage_error(pytester):
    pytester.makeini("[pytest]\nyieldloop_mode = sometimes\n")
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*yieldloop_mode must be*"])


def test_explore_option_finds_the_race_and_prints_the_replay_command(pytester):
    pytester.makepyfile(test_race=RACE)
    plain = pytester.runpytest("-p", "no:cacheprovider")
    plain.assert_outcomes(passed=1)  # FIFO alone does not show it

    result = pytester.runpytest("-p", "no:cacheprovider", "--yieldloop-explore=100")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "lost update" in out
    match = re.search(r"pytest (\S+) --yieldloop-replay=(\S+)", out)
    assert match is not None, out
    node, token = match.group(1), match.group(2).strip("'")
    assert node.endswith("test_race.py::test_counter")

    for _ in range(3):
        again = pytester.runpytest(
            "-p", "no:cacheprovider", node, f"--yieldloop-replay={token}"
        )
        again.assert_outcomes(failed=1)
        assert "lost update" in again.stdout.str()


def test_seed_option_is_reproducible(pytester):
    pytester.makepyfile(test_race=RACE.replace("tg.spawn(inc, 3)", "tg.spawn(inc, 1)"))
    outcomes = []
    for seed in range(16):
        result = pytester.runpytest(
            "-p", "no:cacheprovider", f"--yieldloop-seed={seed}"
        )
        outcomes.append(result.parseoutcomes())
        if result.parseoutcomes().get("failed"):
            assert "--yieldloop-replay=" in result.stdout.str()
            again = pytester.runpytest(
                "-p", "no:cacheprovider", f"--yieldloop-seed={seed}"
            )
            assert again.parseoutcomes() == result.parseoutcomes()
            break
    else:
        pytest.fail(f"no seed in 0..15 showed the race: {outcomes}")
