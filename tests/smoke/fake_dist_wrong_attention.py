"""Installed as a fake third-party distribution by test_smoke.py: an attention backend with a
wrong scale (so its check must fail) and three plugin smoke checks (pass, skip, fail)."""

from astrobio_cli.hookspecs import hookimpl
from astrobio_cli.specs import AttentionBackendSpec


class WrongScale:
    name = "toy-wrong-scale"

    def supports(self, q, k, v, mask, causal, training):
        return True, ""

    def __call__(self, q, k, v, *, mask=None, causal=False, scale=None, dropout_p=0.0):
        from astrobio_attention.eager import eager_attention

        wrong = 2.0 * (q.shape[-1] ** -0.5)  # twice the softmax temperature it was asked for
        return eager_attention(q, k, v, mask=mask, causal=causal, scale=wrong, dropout_p=0.0)


def _ok():
    return "the toy kernel loads"


def _skip():
    from astrobio_cli.smoke import Skip

    raise Skip("needs the toy accelerator")


def _fail():
    raise RuntimeError("toy self-test found a bad value")


@hookimpl
def register_attention_backends(register):
    register(
        AttentionBackendSpec(
            name="toy-wrong-scale",
            description="wrong on purpose",
            factory=WrongScale,
            extras={"smoke_checks": {"ok": _ok, "skip": _skip, "fail": _fail}},
        )
    )
