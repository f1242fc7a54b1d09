"""Warehouse tools: declarations for the model (`declarations`), the dispatcher that runs a
model's function calls (`dispatcher.ToolDispatcher`), the worker's confirmation of writes
(`confirmation`), and the inventory client (`inventory_client.InventoryClient`)."""
