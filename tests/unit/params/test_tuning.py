"""Tests for the tune section's search space: options (choices with keys of their own), their
starts, and the errors that name the dotted key before any trial runs."""

from __future__ import annotations

import pytest

from imgclf.params import ParamsError, TuneParams, parse_params


def _space(space: dict) -> TuneParams:
    return parse_params({"tune": {"space": space}}).tune


def _options(options: dict, **others: dict) -> dict:
    return {"optimizer.name": {"options": options}, **others}


LR = {"low": 0.1, "high": 0.75, "log": True}


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            _options({"sgd": {"optimizer.lr": {"low": 1, "high": 0.1}}}),
            "tune.space.optimizer.name.options.sgd.optimizer.lr: low (1) must be below high",
        ),
        (
            _options({"sgd": {"optimizer.lr": {**LR, "lo": 0}}}),
            "tune.space.optimizer.name.options.sgd.optimizer.lr.lo: unknown key",
        ),
        (
            _options({"sgd": {"optimizer.lr": {"low": 0.1, "high": 20}}}),
            "key 'optimizer.lr' in option 'sgd' of optimizer.name: 20 is not allowed",
        ),
        (
            _options({"sgd": {"optimizer.lrr": LR}}),
            "key 'optimizer.lrr' in option 'sgd' of optimizer.name is not a params key",
        ),
        (
            _options({"sgd": {"data.seed": {"choices": [0, 1]}}}),
            "key 'data.seed' in option 'sgd' of optimizer.name cannot be tuned",
        ),
        (
            _options({"sgd": {"optimizer.schedule": {"low": 0, "high": 1}}}),
            "key 'optimizer.schedule' in option 'sgd' of optimizer.name is not a number",
        ),
        # An option is a value of its key: a name the optimizer registry does not know fails.
        (_options({"sgd": None, "adamm": None}), "key 'optimizer.name': 'adamm' is not allowed"),
        (
            _options({"sgd": {"optimizer.lr": LR}}, **{"optimizer.lr": LR}),
            "key 'optimizer.lr' in option 'sgd' of optimizer.name is also tuned at the top",
        ),
        (
            _options({"sgd": {"optimizer.name": {"choices": ["sgd"]}}}),
            "key 'optimizer.name' in option 'sgd' of optimizer.name is also tuned at the top",
        ),
        (
            _options(
                {"sgd": {"loss.focal_gamma": {"low": 1, "high": 3}}},
                **{
                    "loss.name": {"options": {"focal": {"loss.focal_gamma": {"low": 1, "high": 3}}}}
                },
            ),
            "key 'loss.focal_gamma' in option 'focal' of loss.name is also tuned in the options "
            "of optimizer.name",
        ),
        (
            _options({"sgd": {"loss.name": {"options": {"focal": None}}}}),
            "a choice with options cannot sit inside another's option",
        ),
        (
            _options({"sgd": {"optimizer.momentum": {"low": 0.7, "high": 0.9, "start": 0.95}}}),
            "options.sgd.optimizer.momentum: start (0.95) is outside this key's range",
        ),
        (
            _options({"sgd": {"train.epochs": {"low": 1, "high": 9, "step": 2, "start": 4}}}),
            "options.sgd.train.epochs: start (4) is outside",
        ),
        (
            {"reg.l2": {"low": 0, "high": 1e-3, "start": 1e-4}},
            "key 'reg.l2': start is read only inside a choice's option",
        ),
        (
            {"optimizer.name": {"choices": {"sgd": {"optimizer.lr": LR}}}},
            "tune.space.optimizer.name.choices: choices takes a list; choices that tune keys "
            "of their own are written options:",
        ),
        ({"optimizer.name": {"options": {"sgd": None}, "choices": ["sgd"]}}, "not both"),
        ({"optimizer.name": {"options": {}}}, "tune.space.optimizer.name.options"),
    ],
)
def test_option_errors_name_the_key(space: dict, message: str) -> None:
    with pytest.raises(ParamsError) as raised:
        _space(space)
    assert message in str(raised.value)


def test_options_hold_their_own_keys_and_starts() -> None:
    settings = _space(
        _options(
            {
                "sgd": {"optimizer.lr": LR, "optimizer.momentum": {"low": 0.7, "high": 0.95}},
                "adamw": {"optimizer.lr": {"low": 3e-4, "high": 1e-2, "log": True, "start": 3e-3}},
                "adam": None,
            },
            **{"reg.l2": {"low": 1e-4, "high": 2e-3, "log": True}},
        )
    )
    name = settings.space["optimizer.name"]
    assert name.values() == ("sgd", "adamw", "adam")
    assert name.option_space("adam") == {} and name.option_space("lion") == {}
    assert name.option_space("adamw")["optimizer.lr"].start == 3e-3
    assert settings.space_keys() == (
        "optimizer.name",
        "reg.l2",
        "optimizer.lr",
        "optimizer.momentum",
    )


def test_a_bool_key_may_have_options() -> None:
    settings = _space(
        {
            "optimizer.nesterov": {
                "options": {True: {"optimizer.momentum": {"low": 0.8, "high": 0.9}}}
            }
        }
    )
    assert settings.space["optimizer.nesterov"].option_space(True)


@pytest.mark.parametrize(
    ("key", "dimension", "inside", "outside"),
    [
        ("reg.dropout", {"low": 0.1, "high": 0.5}, [0.1, 0.3, 0.5], [0.09, 0.51, True, "0.3"]),
        ("train.epochs", {"low": 1, "high": 9, "step": 2}, [1, 3, 9], [2, 4.5, 11]),
        ("train.seed", {"choices": [0, 1]}, [0, 1], [True, False, 2]),
        ("optimizer.nesterov", {"choices": [True, False]}, [True, False], [1, 0]),
        ("optimizer.name", {"options": {"sgd": None, "adam": None}}, ["sgd"], ["adamw", None]),
    ],
)
def test_contains_follows_the_range_its_step_and_the_choices(
    key: str, dimension: dict, inside: list, outside: list
) -> None:
    # What the warm start checks before it enqueues a value Optuna would otherwise take as is.
    held = _space({key: dimension}).space[key]
    assert all(held.contains(value) for value in inside)
    assert not any(held.contains(value) for value in outside)
