from astrobio_cli.hookspecs import hookimpl
from astrobio_cli.specs import ModelSpec


@hookimpl
def register_models(register):
    register(ModelSpec(name="Bad_Name", description="not kebab-case", factory=object))
