// The user's side of a guest console, whatever carries it (the
// supervisor's console socket, libvirt's console stream): the guest's
// output goes to stdout and, when interactive, stdin to the guest, raw on
// a terminal, with Ctrl-] detaching and leaving the guest running.
#pragma once

#include <string>

namespace kiln {

// Relays between the terminal and `console`, a socket to the guest's
// console, until the console closes, Ctrl-] is typed, or kiln is
// interrupted. `name` is the instance, for the messages on a terminal.
void relay_console(int console, const std::string& name, bool interactive);

}  // namespace kiln
