"""Client secrets: what a browser gets instead of the API key opens sessions until it expires, and
nothing forged or from another server does."""

from __future__ import annotations

from tuned_whisper.serving.client_secrets import MAX_TTL_S, ClientSecrets

NOW = 1_800_000_000.0


def test_a_minted_secret_names_its_own_caller_until_it_expires() -> None:
    minter = ClientSecrets.from_keys([b"server-key"])
    assert minter is not None
    value, expires_at = minter.mint(60, now=NOW)
    assert expires_at == NOW + 60
    caller = minter.caller(value, now=NOW + 59)
    assert caller is not None and caller.startswith("ek-")
    assert minter.caller(minter.mint(60, now=NOW)[0], now=NOW) != caller  # each page its own caller
    assert minter.caller(value, now=NOW + 61) is None


def test_forged_altered_or_foreign_secrets_are_refused() -> None:
    minter = ClientSecrets.from_keys([b"server-key"])
    other = ClientSecrets.from_keys([b"another-server"])
    assert minter is not None and other is not None
    value, _ = minter.mint(60, now=NOW)
    expires, nonce, signature = value.removeprefix("ek_").split("_")
    longer = f"ek_{int(expires) + 3600}_{nonce}_{signature}"
    for bad in (
        longer,
        value[:-1] + ("0" if value[-1] != "0" else "1"),
        "ek_",
        "server-key",
        other.mint(60, now=NOW)[0],
    ):
        assert minter.caller(bad, now=NOW) is None, bad


def test_no_keys_nothing_to_sign_and_lifetimes_are_bounded() -> None:
    assert ClientSecrets.from_keys([]) is None
    minter = ClientSecrets.from_keys([b"k"])
    assert minter is not None
    assert minter.mint(10**9, now=NOW)[1] == NOW + MAX_TTL_S


def test_a_key_is_read_from_bearer_or_basic_and_names_the_same_caller_either_way() -> None:
    import base64

    from tuned_whisper.serving.client_secrets import caller_of, key_caller, presented_key

    basic = "Basic " + base64.b64encode(b"anyone:sk-team").decode()
    assert presented_key("Bearer sk-team") == presented_key(basic) == "sk-team"
    assert caller_of("Bearer sk-team") == caller_of(basic) == key_caller("sk-team")
    assert caller_of("bearer  sk-team ") == key_caller("sk-team")  # the scheme is case-insensitive
    for nothing in ("", "Bearer", "Bearer   ", "Basic not-base64!", "Token sk-team", "sk-team"):
        assert presented_key(nothing) is None and caller_of(nothing) is None, nothing
