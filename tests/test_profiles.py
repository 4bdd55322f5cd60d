"""Hardware profiles: the shipped ones load, every rule names the file, the key and what is allowed."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from sim.emv.kernel import TerminalConfig
from sim.profiles import LINK_DEFAULTS, PROFILE_DIR, HardwareProfile, ProfileError, list_profiles, load_profile

SHIPPED = ["countertop-ethernet", "legacy-dialup", "mobile-3g", "unattended-contactless"]


def _data(name: str = "countertop-ethernet") -> dict:
    return tomllib.loads((PROFILE_DIR / f"{name}.toml").read_text())


def _write(tmp_path: Path, data: dict) -> Path:
    lines: list[str] = []

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f'"{k}" = {value(x)}' for k, x in v.items()) + " }"
        return str(v)

    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    arrays = {k: v for k, v in data.items() if isinstance(v, list) and v and isinstance(v[0], dict)}
    for key, v in data.items():
        if key not in tables and key not in arrays:
            lines.append(f"{key} = {value(v)}")
    for key, table in tables.items():
        lines.append(f"[{key}]")
        for k, v in table.items():
            if isinstance(v, list) and v and isinstance(v[0], dict):
                for item in v:
                    lines.append(f"[[{key}.{k}]]")
                    lines.extend(f"{ik} = {value(iv)}" for ik, iv in item.items())
            else:
                lines.append(f'"{k}" = {value(v)}')
    for key, items in arrays.items():
        for item in items:
            lines.append(f"[[{key}]]")
            for k, v in item.items():
                lines.append(f"{k} = {value(v)}")
    path = tmp_path / "profile.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_shipped_profiles_are_listed_and_load() -> None:
    assert set(SHIPPED) <= set(list_profiles())
    for name in SHIPPED:
        profile = load_profile(name)
        assert isinstance(profile, HardwareProfile) and profile.name == name
        assert load_profile(PROFILE_DIR / f"{name}.toml") == profile
        assert TerminalConfig.from_profile(profile).profile_name == name


def test_the_three_required_models() -> None:
    countertop = load_profile("countertop-ethernet")
    assert countertop.comms.primary == "ethernet" and countertop.readers.contact and countertop.printer.present
    assert countertop.battery is None and not countertop.unattended
    mobile = load_profile("mobile-3g")
    assert mobile.comms.primary == "3g" and mobile.battery is not None
    assert {link.kind for link in mobile.comms.links} == {"3g", "wifi"}
    assert mobile.comms.primary_link.latency_ms == 350  # overridden
    assert mobile.comms.links[1].latency_ms == LINK_DEFAULTS["wifi"]["latency_ms"]  # default
    unattended = load_profile("unattended-contactless")
    assert unattended.unattended and not unattended.readers.contact and not unattended.pin_pad.present
    assert unattended.readers.contactless and unattended.cvms == ("no_cvm",)


def test_derived_capabilities() -> None:
    profile = load_profile("countertop-ethernet")
    assert profile.online_capable and profile.offline_capable
    assert profile.floor_limit("EUR") == profile.floor_limit("978") == 5000
    assert profile.floor_limit("GBP") == 0
    config = TerminalConfig.from_profile(profile)
    assert config.floor_limits["978"] == 5000 and config.contactless_transaction_limits["840"] == 10000
    assert config.action_codes(config.applications[1])[0] == bytes.fromhex("1000000000")


def test_unknown_profile_names_the_shipped_ones() -> None:
    with pytest.raises(ProfileError, match="countertop-ethernet"):
        load_profile("no-such-terminal")


def test_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("name = \n")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(path)


@pytest.mark.parametrize(
    "change,key,words",
    [
        (lambda d: d["comms"]["links"][0].update(kind="satellite"), "comms.links.0.kind",
         "'ethernet', 'wifi', '3g' or 'dialup'"),
        (lambda d: d["comms"].update(primary="wifi"), "comms", "not one of the links fitted"),
        (lambda d: d.update(terminal_type="29"), "terminal_type", "1-3 attended or 4-6 unattended"),
        (lambda d: d.update(terminal_capabilities="E0E8"), "terminal_capabilities", "3 bytes of hex"),
        (lambda d: d.update(cvms=["online_pin", "signature", "no_cvm"]), "(top level)", "byte 2"),
        (lambda d: d.update(manual_entry=False), "(top level)", "manual input bit"),
        (lambda d: d["floor_limits"].update(XYZ=100), "floor_limits", "not in ISO 4217"),
        (lambda d: d["floor_limits"].update(EUR=-1), "floor_limits.EUR", "greater than or equal to 0"),
        (lambda d: d["tac"].update(online="DC40"), "tac.online", "5 bytes of hex"),
        (lambda d: d["random_selection"].update(max_target_percent=5), "random_selection", "below target_percent"),
        (lambda d: d["pin_pad"].update(present=False), "(top level)", "need a PIN pad"),
        (lambda d: d.pop("timeouts"), "timeouts", "is missing"),
        (lambda d: d["readers"].update(nfc=True), "readers.nfc", "allowed here: contact, contactless, magstripe"),
        (lambda d: d.update(colour="red"), "colour", "allowed here: name, description"),
        (lambda d: d["applications"][0].update(aid="A000"), "applications.0.aid", "5 to 16 bytes"),
        (lambda d: d.update(oda=["sda"]), "(top level)", "byte 3"),
    ],
)
def test_errors_name_file_key_and_allowed_values(tmp_path: Path, change, key: str, words: str) -> None:
    data = _data()
    change(data)
    path = _write(tmp_path, data)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert str(path) in message and words in message
    assert info.value.key == key and info.value.path == str(path)


def test_round_trip_writer_is_faithful(tmp_path: Path) -> None:
    assert load_profile(_write(tmp_path, _data())) == load_profile("countertop-ethernet")
