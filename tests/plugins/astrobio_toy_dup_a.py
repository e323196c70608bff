from astrobio_cli.hookspecs import hookimpl
from astrobio_cli.specs import ModelSpec


@hookimpl
def register_models(register):
    register(ModelSpec(name="dup-model", description="from A", factory=object))
