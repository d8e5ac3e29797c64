"""Set-up shared by every test directory."""

import signal

# Tests send Ctrl-C to child processes. A run started in the background by a non-interactive
# shell has SIGINT ignored, and its children would inherit that (an ignored signal stays ignored
# across exec): restore the default, so that children see SIGINT as a user's process does.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
