"""Config schema, layering, located errors, secrets and hashing (config/)."""

from __future__ import annotations

import typing
from typing import Any

import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from config import (Config, ConfigError, config_hash, default_path, load_config, parse_yaml,
                    read_secret)
from config.source import deep_merge

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "user.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(path: Path | None = None, overrides: dict | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return info.value


# -- defaults ---------------------------------------------------------------------------


def test_defaults_match_design():
    cfg = load_config()
    r = cfg.risk
    assert r.max_position_size == Decimal("1000")
    assert r.max_order_size == Decimal("100")
    assert r.min_order_size == Decimal("1")
    assert r.max_spread_bps == Decimal("50")
    assert r.max_volatility == Decimal("0.02")
    assert r.max_volume_participation == Decimal("0.10")
    assert r.max_daily_loss == Decimal("1000")
    assert r.max_position_concentration == Decimal("0.10")
    assert r.fail_closed_on_missing_positions is True
    assert r.hedging_enabled("default") is False
    assert cfg.stops.slippage_bps == Decimal("50") and cfg.stops.fallback_after_s == 2.0
    assert cfg.hedger.debounce_ms == 500
    assert cfg.groups.exposure_check_ms == 100
    assert cfg.groups.margin_limit == Decimal("0.90")
    grid = cfg.groups.shock_grid
    assert len(grid.price) * len(grid.iv) * len(grid.spread) == 27
    assert cfg.gateway.reconnect.max_s == 60.0 and cfg.gateway.reconnect.jitter == "full"
    assert (cfg.gateway.budget.attempts, cfg.gateway.budget.window_s) == (300, 300.0)
    assert cfg.reconciler.poll_s == 12.0
    assert cfg.runtime.executor_workers == 2
    assert (cfg.runtime.supervisor.intensity, cfg.runtime.supervisor.period_s) == (5, 60.0)
    assert cfg.control.host == "127.0.0.1"
    assert cfg.run.duration_s == 30.0
    assert "BTCUSDT" in cfg.market.symbols and len(cfg.market.symbols) >= 3
    assert isinstance(r.max_order_size, Decimal)


def test_default_yaml_equals_model_defaults():
    assert load_config() == Config()


def _field_paths(model: type[BaseModel], prefix: tuple = (), default: Any = None) -> set[tuple]:
    """Every key of the model; a mapping of sections (``venues``) by its default entries."""
    out = set()
    default = model() if default is None else default
    for name, info in model.model_fields.items():
        ann = info.annotation
        args = typing.get_args(ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out |= _field_paths(ann, prefix + (name,), getattr(default, name))
        elif typing.get_origin(ann) is dict and len(args) == 2 and isinstance(args[1], type) \
                and issubclass(args[1], BaseModel) and getattr(default, name):
            for key, entry in getattr(default, name).items():
                out |= _field_paths(args[1], prefix + (name, key), entry)
        else:
            out.add(prefix + (name,))
    return out


def _yaml_paths(data: dict, prefix: tuple = ()) -> set[tuple]:
    out = set()
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out |= _yaml_paths(value, prefix + (key,))
        else:
            out.add(prefix + (key,))
    return out


def test_default_yaml_lists_every_key():
    data = yaml.safe_load(default_path().read_text())
    assert _yaml_paths(data) == _field_paths(Config)


def test_production_example_loads_and_is_tighter():
    cfg = load_config(REPO / "config" / "production.example.yaml")
    base = Config()
    assert cfg.risk.max_order_size < base.risk.max_order_size
    assert cfg.risk.max_daily_loss < base.risk.max_daily_loss
    assert cfg.risk.limits_for("BTCUSDT").max_order_size == Decimal("0.5")
    assert cfg.risk.limits_for("ETHUSDT").max_order_size == cfg.risk.max_order_size
    assert cfg.alerts.telegram.enabled and cfg.alerts.webhook.enabled
    assert cfg.reconciler.poll_s > 0
    assert cfg.demo.groups.enabled is False, "the demo drills never run against a real venue"


def test_demo_groups_need_symbols_of_their_own(tmp_path):
    cfg = load_config()
    assert not cfg.demo.groups.enabled, "drills run only when asked (run --drills)"
    assert not set(cfg.demo.groups.symbols) & set(cfg.market.symbols)
    msg = str(error_of(write(tmp_path, "market: {symbols: [BTCUSDT, ADAUSDT]}\n"
                                       "demo: {groups: {enabled: true}}\n")))
    assert "demo.groups.symbols" in msg and "ADAUSDT" in msg
    off = write(tmp_path, "market: {symbols: [ADAUSDT]}\n", name="off.yaml")
    assert load_config(off).market.symbols == ["ADAUSDT"]  # drills off: the pair is free
    remote = {"market": {"symbols": ["ADAUSDT"]}, "exchange": {"url": "ws://127.0.0.1:9"}}
    assert load_config(overrides=remote).market.symbols == ["ADAUSDT"]  # the demo won't run
    for bad, key in (("demo: {groups: {drills: [explode]}}\n", "demo.groups.drills"),
                     ("demo: {groups: {symbols: [ADAUSDT]}}\n", "demo.groups.symbols"),
                     ("demo: {groups: {every_s: 0}}\n", "demo.groups.every_s")):
        assert key in str(error_of(write(tmp_path, bad, name="bad.yaml"))), bad


def test_package_data_path_is_relative_to_the_package():
    assert default_path().parent.name == "config"
    assert default_path().is_file()


# -- layering ---------------------------------------------------------------------------


def test_user_file_and_overrides_deep_merge(tmp_path):
    path = write(tmp_path, """
        risk:
          max_order_size: "50"
          rate_limit: {burst: 5}
          per_symbol:
            ETHUSDT: {max_order_size: 7}
        market:
          symbols: [BTCUSDT]
    """)
    cfg = load_config(path, {"risk": {"rate_limit": {"orders_per_s": 2}}, "run": {"duration_s": 5}})
    assert cfg.risk.max_order_size == Decimal("50")
    assert cfg.risk.max_position_size == Decimal("1000")           # untouched default
    assert cfg.risk.rate_limit.burst == 5                          # from the file
    assert cfg.risk.rate_limit.orders_per_s == Decimal("2")        # from overrides
    assert cfg.risk.limits_for("ETHUSDT").max_order_size == Decimal("7")
    assert cfg.risk.limits_for("ETHUSDT").min_order_size == Decimal("1")
    assert cfg.market.symbols == ["BTCUSDT"]                       # lists replace
    assert cfg.run.duration_s == 5.0


def test_deep_merge_does_not_mutate_inputs():
    base = {"a": {"b": 1, "c": [1, 2]}}
    top = {"a": {"b": 2}}
    merged = deep_merge(base, top)
    assert merged == {"a": {"b": 2, "c": [1, 2]}}
    assert base == {"a": {"b": 1, "c": [1, 2]}}
    merged["a"]["c"].append(3)
    assert base["a"]["c"] == [1, 2]


def test_decimals_accept_strings_ints_and_floats_exactly():
    cfg = load_config(overrides={"risk": {"max_order_size": 0.1, "max_position_size": "1e3",
                                          "min_order_size": 0.05}})
    assert cfg.risk.max_order_size == Decimal("0.1")
    assert str(cfg.risk.max_order_size) == "0.1"
    assert cfg.risk.max_position_size == Decimal("1000")


def test_fail_closed_opt_out_must_be_explicit(tmp_path):
    assert load_config().risk.fail_closed_on_missing_positions is True
    path = write(tmp_path, "risk: {fail_closed_on_missing_positions: false}\n")
    assert load_config(path).risk.fail_closed_on_missing_positions is False


def test_hedging_mode_per_account():
    cfg = load_config(overrides={"risk": {"hedging_mode": {"options": True}}})
    assert cfg.risk.hedging_enabled("options") and not cfg.risk.hedging_enabled("default")


# -- located errors ------------------------------------------------------------------------


@pytest.mark.parametrize("yaml_text, line, key, why", [
    ("risk:\n  max_order_size: -5\n", 2, "risk.max_order_size", "-5 is not valid: must be > 0"),
    ("risk:\n  max_volatility: .nan\n", 2, "risk.max_volatility", "finite"),
    ("risk:\n  max_daily_loss: .inf\n", 2, "risk.max_daily_loss", "finite"),
    ("risk:\n  max_order_size: \"NaN\"\n", 2, "risk.max_order_size", "finite"),
    ("risk:\n  max_order_size: abc\n", 2, "risk.max_order_size", "decimal number"),
    ("risk:\n  max_order_size: true\n", 2, "risk.max_order_size", "not a boolean"),
    ("risk:\n  max_volume_participation: 1.5\n", 2, "risk.max_volume_participation",
     "must be <= 1"),
    ("runtime:\n  executor_workers: 0\n", 2, "runtime.executor_workers", "must be > 0"),
    ("runtime:\n  executor_workers: yes\n", 2, "runtime.executor_workers", "not a boolean"),
    ("reconciler:\n  poll_s: 0\n", 2, "reconciler.poll_s", "must be > 0"),
    ("reconciler:\n  poll_s: null\n", 2, "reconciler.poll_s", "null is not valid"),
    ("reconciler:\n  poll_s: 100000\n", 2, "reconciler.poll_s", "must be <= 300"),
    ("gateway:\n  reconnect:\n    max_s: 120\n", 3, "gateway.reconnect.max_s", "<= 60"),
    ("gateway:\n  reconnect:\n    base_s: 90\n", 3, "gateway.reconnect.base_s", "above max_s"),
    ("gateway:\n  reconnect:\n    jitter: sometimes\n", 3, "gateway.reconnect.jitter",
     "full, equal or none"),
    ("market:\n  symbols: [BTCUSDT, btcusdt]\n", 2, "market.symbols[1]", "upper-case"),
    ("market:\n  symbols: [BTCUSDT, BTCUSDT]\n", 2, "market.symbols", "listed twice"),
    ("market:\n  symbols: []\n", 2, "market.symbols", "at least 1"),
    ("risk:\n  min_order_size: 500\n", 2, "risk.min_order_size", "above max_order_size"),
    ("risk:\n  per_symbol:\n    BTCUSDT:\n      max_order_size: 2000\n", 4,
     "risk.per_symbol.BTCUSDT.max_order_size", "above max_position_size"),
    ("risk:\n  per_symbol:\n    btc: {}\n", 3, "risk.per_symbol.btc", "key 'btc'"),
    ("groups:\n  shock_grid:\n    spread: [\"0.5\"]\n", 3, "groups.shock_grid.spread",
     "must be >= 1"),
    ("control:\n  host: 0.0.0.0\n", 1, "control.token_env", "needs a token"),
    ("hedger:\n  debounce_ms: 0\n", 2, "hedger.debounce_ms", "must be > 0"),
    ("alerts:\n  webhook:\n    timeout_s: 120\n", 3, "alerts.webhook.timeout_s", "<= 30"),
    ("exchange:\n  url: http://x\n", 2, "exchange.url", "ws://"),
    ("risk: 5\n", 1, "risk", "must be a mapping"),
])
def test_bad_value_names_file_line_and_key(tmp_path, yaml_text, line, key, why):
    path = write(tmp_path, yaml_text, "prod.yaml")
    err = error_of(path)
    text = str(err)
    assert f"prod.yaml:{line}: {key}: " in text, text
    assert why in text, text


def test_error_message_format_matches_the_documented_one(tmp_path):
    path = write(tmp_path, "# comment\n" * 13 + "risk: {max_order_size: -5}\n", "prod.yaml")
    issue = error_of(path).issues[0]
    assert (issue.line, issue.path) == (14, "risk.max_order_size")
    assert str(issue) == f"{path}:14: risk.max_order_size: -5 is not valid: must be > 0"


def test_relative_paths_are_shown_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "prod.yaml").write_text("x: 1\n")
    assert str(error_of(Path("config/prod.yaml"))).startswith("config/prod.yaml:1: x: unknown key")


@pytest.mark.parametrize("yaml_text, line, key", [
    ("bogus: 1\n", 1, "bogus"),
    ("risk:\n  max_order_sise: 5\n", 2, "risk.max_order_sise"),
    ("risk:\n  rate_limit:\n    per_second: 3\n", 3, "risk.rate_limit.per_second"),
    ("alerts:\n  webhook:\n    url: null\n    headers: {}\n", 4, "alerts.webhook.headers"),
    ("risk:\n  per_symbol:\n    ETHUSDT: {max_daily_loss: 5}\n", 3,
     "risk.per_symbol.ETHUSDT.max_daily_loss"),
])
def test_unknown_keys_are_errors_with_their_line(tmp_path, yaml_text, line, key):
    err = error_of(write(tmp_path, yaml_text))
    assert f"user.yaml:{line}: {key}: unknown key" in str(err), str(err)


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, """
        risk:
          max_order_size: -5
          bogus: 1
        reconciler: {poll_s: 0}
    """)
    err = error_of(path)
    assert [(i.line, i.path) for i in err.issues] == [
        (3, "risk.max_order_size"), (4, "risk.bogus"), (5, "reconciler.poll_s")]


def test_override_errors_name_the_overrides():
    err = error_of(overrides={"run": {"duration_s": -1}})
    assert str(err) == "<overrides>: run.duration_s: -1 is not valid: must be > 0"


def test_cross_section_check_blames_a_key(tmp_path):
    err = error_of(write(tmp_path, "reconciler:\n  poll_s: 40\n"))
    assert "risk.position_staleness_s" in str(err) and "reconciler.poll_s" in str(err)


def test_yaml_problems_have_lines(tmp_path):
    assert "user.yaml:2: YAML syntax error" in str(error_of(write(tmp_path, "risk: [1\nx: 2\n")))
    dup = error_of(write(tmp_path, "run:\n  duration_s: 1\n  duration_s: 2\n"))
    assert "user.yaml:3: run.duration_s: duplicate key (first given on line 2)" in str(dup)
    boolkey = error_of(write(tmp_path, "risk:\n  on: 1\n"))
    assert "user.yaml:2: risk: key True is not a string" in str(boolkey)
    assert "top level must be a mapping" in str(error_of(write(tmp_path, "- 1\n")))
    assert "!!python" not in str(error_of(write(tmp_path, "run: !!python/object:os.system {}\n")))


def test_missing_file_is_a_config_error(tmp_path):
    err = error_of(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(err) and "cannot read" in str(err)


def test_empty_user_file_means_defaults(tmp_path):
    assert load_config(write(tmp_path, "# nothing\n")) == Config()


def test_yaml_anchors_and_merge_keys_work(tmp_path):
    path = write(tmp_path, """
        x-limits: &tight {max_order_size: "5", min_order_size: "1"}
    """)
    assert "x-limits: unknown key" in str(error_of(path))
    src = parse_yaml("a: &x {b: 1}\nc:\n  <<: *x\n  d: 2\n", "t.yaml")
    assert src.data == {"a": {"b": 1}, "c": {"b": 1, "d": 2}}
    assert src.lines[("c", "d")] == 4


# -- secrets ----------------------------------------------------------------------------------


def test_secrets_only_as_env_var_names(tmp_path):
    err = error_of(write(tmp_path, "alerts:\n  telegram:\n    bot_token: '123456:ABC-xyz'\n"))
    assert "user.yaml:3: alerts.telegram.bot_token: unknown key" in str(err)
    assert "environment variable" in str(err)
    err = error_of(write(tmp_path, "alerts:\n  telegram:\n    bot_token_env: '123456:ABC-xyz'\n"
                                   "    chat_id_env: TG_CHAT\n"))
    assert "alerts.telegram.bot_token_env" in str(err) and "NAME of an environment" in str(err)
    err = error_of(write(tmp_path, "alerts:\n  webhook:\n    url: https://u:pw@hooks.example/x\n"))
    assert "alerts.webhook.url" in str(err) and "credentials" in str(err)
    err = error_of(write(tmp_path, "alerts:\n  telegram:\n    bot_token_env: TG_TOKEN\n"))
    assert "alerts.telegram.chat_id_env: telegram needs both" in str(err)


def test_secret_values_are_never_in_the_config(monkeypatch):
    monkeypatch.setenv("TG_TOKEN", "super-secret-token")
    monkeypatch.setenv("TG_CHAT", "4242")
    cfg = load_config(overrides={"alerts": {"telegram": {"bot_token_env": "TG_TOKEN",
                                                         "chat_id_env": "TG_CHAT"}}})
    assert cfg.alerts.telegram.bot_token_env == "TG_TOKEN"
    assert "super-secret-token" not in repr(cfg.model_dump())
    assert read_secret(cfg.alerts.telegram.bot_token_env, "alerts.telegram.bot_token_env") \
        == "super-secret-token"
    monkeypatch.delenv("TG_CHAT")
    with pytest.raises(ConfigError, match="TG_CHAT is not set"):
        read_secret("TG_CHAT", "alerts.telegram.chat_id_env")


# -- hash -------------------------------------------------------------------------------------


def test_config_hash_is_stable_and_tracks_values(tmp_path):
    h = config_hash(load_config())
    assert len(h) == 64 and h == config_hash(load_config()) == config_hash(Config())
    same = write(tmp_path, "# a comment\nrisk: {max_volume_participation: '0.1', max_order_size: 100}\n")
    assert config_hash(load_config(same)) == h          # same values, other spelling
    changed = load_config(overrides={"risk": {"max_order_size": "99"}})
    assert config_hash(changed) != h
    assert config_hash(load_config(overrides={"reconciler": {"poll_s": 11}})) != h


def test_config_hash_is_the_same_in_another_process():
    code = "from config import load_config, config_hash; print(config_hash(load_config()))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert out.stdout.strip() == config_hash(load_config())


def test_config_is_immutable():
    cfg = load_config()
    with pytest.raises(ValidationError, match="frozen"):
        cfg.risk.max_order_size = Decimal("1")  # type: ignore[misc]  # the point: a frozen model refuses it


# -- rule 14 -----------------------------------------------------------------------------------


def test_import_reads_no_file():
    code = textwrap.dedent("""
        import sys
        opened = []
        sys.addaudithook(lambda ev, args: opened.append(str(args[0]))
                         if ev == "open" and str(args[0]).endswith((".yaml", ".yml")) else None)
        import config, config.loader, app.scenario_file
        assert not opened, opened
        config.load_config()
        assert any(p.endswith("default.yaml") for p in opened), opened
    """)
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# -- fit with the modules that consume the config --------------------------------------------


def test_sim_settings_feed_the_simulated_exchange():
    from config.sim_exchange import SimSettings

    cfg = load_config(overrides={"exchange": {"partial_fills": 3, "maker_fee_bps": "-0.5"}})
    sim = SimSettings.from_spec(cfg.exchange.sim_settings())
    assert sim.partial_fills == 3 and sim.maker_fee_bps == Decimal("-0.5")
    assert sim.taker_fee_bps == cfg.exchange.taker_fee_bps
    assert sim.quote_currency == cfg.exchange.quote_currency


def test_the_simulated_exchange_has_one_schema_and_one_set_of_defaults():
    """config.sim_exchange declares the settings once: the config section
    inherits them (keys and defaults), an engine built with no settings has the
    same values, and the scenario keys the engine parses are that registry's."""
    from config.sim_exchange import (EXCHANGE_KEYS, FAULT, SETTING, SimBehaviour, SimSettings,
                                     parse_spec)
    from config.venue import ExchangeConfig
    from exchange.engine import SimulatedExchange

    section, engine = load_config().exchange, SimulatedExchange().config
    assert issubclass(ExchangeConfig, SimBehaviour) and issubclass(SimSettings, SimBehaviour)
    assert set(section.sim_settings()) == set(SimBehaviour.model_fields)
    for key, field in SimBehaviour.model_fields.items():
        assert getattr(section, key) == getattr(engine, key) == field.default, key
    assert set(EXCHANGE_KEYS.keys([SETTING])) == {*SimSettings.model_fields, "fee_bps"}
    for key in EXCHANGE_KEYS.keys([FAULT]):
        with pytest.raises(ValueError, match=f"exchange {key}"):
            parse_spec({key: object()})  # the engine's parser knows every fault key


def test_the_standalone_exchange_uses_the_config_like_the_embedded_one(tmp_path):
    """``main.py exchange`` used to build its engine with the engine's own defaults
    (no latency, no fees, USD) while ``run``'s embedded exchange read the config."""
    from app.exchange_serve import sim_config

    default = load_config().exchange
    sim = sim_config()
    assert (sim.latency_ms, sim.maker_fee_bps, sim.taker_fee_bps, sim.quote_currency) == (
        default.latency_ms, default.maker_fee_bps, default.taker_fee_bps, default.quote_currency)
    assert sim.latency_ms > 0 and sim.quote_currency == "USDT"
    path = tmp_path / "slow.yaml"
    path.write_text("exchange: {latency_ms: 7, partial_fills: 4}\n", encoding="utf-8")
    sim = sim_config(path)
    assert sim.latency_ms == 7 and sim.partial_fills == 4

    bad = tmp_path / "bad.yaml"
    bad.write_text("exchange: {latency_ms: -1}\n", encoding="utf-8")
    done = subprocess.run([sys.executable, str(REPO / "main.py"), "exchange", "--port", "0",
                           "--out", str(tmp_path / "x"), "--config", str(bad)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "exchange.latency_ms" in done.stderr and "bad.yaml" in done.stderr


def test_alert_sink_entries_build_the_alert_sinks(monkeypatch):
    from app.alert_sinks import sinks_from_config

    assert [s.kind for s in sinks_from_config(load_config().alerts.sink_entries())] == ["log"]
    cfg = load_config(REPO / "config" / "production.example.yaml")
    sinks = sinks_from_config(cfg.alerts.sink_entries())
    assert [s.kind for s in sinks] == ["log", "webhook", "telegram"]
    assert "TW_TELEGRAM_BOT_TOKEN" in repr(sinks[2])
