"""The run configuration: the typed YAML schema (``schema``) and reading / writing it (``yaml_io``).

It sits below everything that reads a run config (data, tasks, training, sweep, cli), so those
import it downward; it imports only the library layers whose settings it carries.
"""
