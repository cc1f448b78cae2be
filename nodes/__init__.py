"""One module per role: wiring of servicers onto mpcnet's core and transport.

Run a role with ``python -m nodes.<role>`` or ``mpcnet <role>``.
"""
