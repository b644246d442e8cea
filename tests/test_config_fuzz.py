"""The command-line parser, fuzzed: any arguments parse to typed values or fail in one line."""
import contextlib
import io

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

import basic_gan  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.text(max_size=30),
    st.builds(lambda k, v: f"--{k}={v}",
              st.sampled_from(["epochs", "lr", "g_widths", "resume", "device", "nope"]),
              st.one_of(st.text(max_size=20), st.integers().map(str), st.floats().map(repr))),
    st.sampled_from(["--epochs", "--resume", "--lr", "--", "-h"])), max_size=4))
def test_fuzzed_arguments_parse_or_fail_in_one_line(argv):
    err, saved = io.StringIO(), basic_gan.config()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            overrides = basic_gan.as_meant(basic_gan.parse_args(argv))
            vars(basic_gan).update(overrides)
            basic_gan.check_config()  # the types and values, as main() checks them
    except SystemExit as e:
        assert e.code == 0 or (e.code == 2 and err.getvalue().count("\n") == 1
                               and "error:" in err.getvalue())
        return
    finally:
        vars(basic_gan).update(saved)
    for key, value in overrides.items():  # an int is a fine number where a float is meant
        assert type(value) in ((int, float) if type(basic_gan.DEFAULTS[key]) is float
                               else (type(basic_gan.DEFAULTS[key]),))
