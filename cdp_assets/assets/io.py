"""Tables live in the warehouse: between ops only their names travel."""

from dagster import ConfigurableIOManager, InputContext, OutputContext


class TableNameIOManager(ConfigurableIOManager):
    """Stores nothing (the op already wrote its table); loads the upstream table's name."""

    def handle_output(self, context: OutputContext, obj: object) -> None:
        return None

    def load_input(self, context: InputContext) -> str:
        return ".".join(context.asset_key.path) if context.has_asset_key else ""
