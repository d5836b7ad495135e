"""Resources beside the warehouse engines: clients of services the engines use."""
