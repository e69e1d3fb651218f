"""A plugin that fails to import (test data)."""

raise ImportError("this plugin needs a module that is not installed")
