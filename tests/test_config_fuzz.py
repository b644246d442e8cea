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
    st.builds(lambda k, v: f"--{k}={v}", st.sampled_from(["epochs", "lr", "g_widths", "resume", "device", "nope"]),
              st.one_of(st.text(max_size=20), st.integers().map(str), st.floats().map(repr))),
    st.sampled_from(["--epochs", "--resume", "--lr", "--", "-h"])), max_size=4))
def test_fuzzed_arguments_parse_or_fail_in_one_line(argv):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            overrides = basic_gan.parse_args(argv)
    except SystemExit as e:
        assert e.code == 0 or (e.code == 2 and err.getvalue().count("\n") == 1 and "error:" in err.getvalue())
        return
    for key, value in overrides.items():
        assert type(value) is type(getattr(basic_gan, key))
