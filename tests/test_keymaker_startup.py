"""keymaker.md §1: options over environment, and every refusal to start."""

from __future__ import annotations

from pathlib import Path

import pytest

from locksmith.__main__ import run
from locksmith.personalities.keymaker import settings as cfg
from locksmith.personalities.keymaker.server import run as run_keymaker


def _interfaces(root: Path, **flags: int) -> Path:
    for name, value in flags.items():
        (root / name).mkdir(parents=True)
        (root / name / "flags").write_text(f"{value:#x}\n")
    return root


def test_defaults_and_environment() -> None:
    settings = cfg.resolve([], {})
    assert (settings.host, settings.port, settings.nsm.kind) == ("0.0.0.0", 8080, "device")
    assert (settings.one_shot, settings.max_body) == (False, 4 * 1024 * 1024)
    assert settings.expire == 42 * 365 * 86400
    env = {"KEYMAKER_LISTEN_ADDR": "127.0.0.1:9000", "LOCKSMITH_NSM": "none",
           "KEYMAKER_ONE_SHOT": "1", "KEYMAKER_MAX_BODY_BYTES": "1000",
           "KEYFORK_OPENPGP_EXPIRE": "1d"}
    settings = cfg.resolve([], env)
    assert (settings.host, settings.port, settings.nsm.kind) == ("127.0.0.1", 9000, "none")
    assert (settings.one_shot, settings.max_body, settings.expire) == (True, 1000, 86400)


def test_options_win_over_the_environment(tmp_path: Path) -> None:
    env = {"KEYMAKER_LISTEN_ADDR": "127.0.0.1:9000", "LOCKSMITH_NSM": "none",
           "KEYMAKER_MAX_BODY_BYTES": "1000"}
    settings = cfg.resolve(["--listen", "[::1]:0", "--nsm", "simulated", "--nsm-dir",
                            str(tmp_path), "--max-body", "5", "--one-shot"], env)
    assert (settings.host, settings.port, settings.nsm.kind) == ("::1", 0, "simulated")
    assert (settings.max_body, settings.one_shot) == (5, True)


@pytest.mark.parametrize("argv,env", [
    (["--listen", "nowhere"], {}),
    (["--listen", "127.0.0.1:70000"], {}),
    (["--nsm", "magic"], {}),
    (["--nsm", "simulated"], {}),
    (["--max-body", "0"], {}),
    ([], {"KEYMAKER_ONE_SHOT": "yes"}),
    (["--bogus"], {}),
])
def test_bad_options_are_usage_errors(argv: list[str], env: dict[str, str]) -> None:
    with pytest.raises(cfg.UsageError):
        cfg.resolve(argv, env)


def test_invalid_expiry_refuses_to_start_naming_the_variable(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert run_keymaker(["--nsm", "none"], {"KEYFORK_OPENPGP_EXPIRE": "forever"}) == 1
    assert "KEYFORK_OPENPGP_EXPIRE" in capsys.readouterr().err


def test_device_nsm_absent_refuses_to_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = cfg.resolve([], {})
    with pytest.raises(cfg.StartupError, match="^NSM device /dev/nsm not found; use --nsm "
                       "simulated for development or --nsm none to serve v0 only$"):
        cfg.check_environment(settings, {}, device_path=str(tmp_path / "nsm"))
    if not Path("/dev/nsm").exists():
        assert run(["keymaker", "--listen", "127.0.0.1:0"]) == 1
        assert cfg.NO_DEVICE in capsys.readouterr().err


def test_network_guard_refuses_non_loopback_interfaces_unless_bypassed(tmp_path: Path) -> None:
    device = tmp_path / "nsm"
    device.touch()
    net = _interfaces(tmp_path / "net", lo=0x9, eth0=0x1003, down0=0x1002)
    settings = cfg.resolve([], {})
    with pytest.raises(cfg.StartupError, match=r"up: eth0 \("):
        cfg.check_environment(settings, {}, device_path=str(device), sys_class_net=net)
    for variable in cfg.BYPASS_VARIABLES:
        warnings = cfg.check_environment(settings, {variable: "1"}, device_path=str(device),
                                         sys_class_net=net)
        assert warnings and "bypassed" in warnings[0]
    loopback_only = _interfaces(tmp_path / "net2", lo=0x9)
    assert cfg.check_environment(settings, {}, device_path=str(device),
                                 sys_class_net=loopback_only) == []


def test_simulated_and_none_skip_the_guard_with_a_warning(tmp_path: Path) -> None:
    for argv in (["--nsm", "none"], ["--nsm", "simulated", "--nsm-dir", str(tmp_path)]):
        warnings = cfg.check_environment(cfg.resolve(argv, {}), {})
        assert len(warnings) == 1 and "network guard skipped" in warnings[0]


def test_e2e_entropy_hook_only_with_the_simulated_nsm(tmp_path: Path) -> None:
    hook = {cfg.E2E_VARIABLE: "1"}
    assert cfg.resolve(["--nsm", "simulated", "--nsm-dir", str(tmp_path)], hook).unsafe_fixed_entropy
    assert not cfg.resolve(["--nsm", "simulated", "--nsm-dir", str(tmp_path)],
                           {cfg.E2E_VARIABLE: "true"}).unsafe_fixed_entropy
    assert not cfg.resolve(["--nsm", "none"], hook).unsafe_fixed_entropy
    assert not cfg.resolve([], hook).unsafe_fixed_entropy
