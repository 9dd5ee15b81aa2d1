// ChannelDevice: finding and opening the exec channel's device in the guest
// (see "The exec channel" in formats/image/guest_protocol.h): a
// virtio-serial port under qemu, a serial line under UML.
#pragma once

#include <expected>
#include <optional>
#include <string>
#include <string_view>

#include "guest/fd.h"

namespace kiln::agent {

// The channel the kernel command line names with kiln.agent=VALUE, or
// nothing (a boot kiln did not start).
std::optional<std::string> channel_from_cmdline(std::string_view cmdline);

// Opens the channel: a device path, or "virtio:NAME" for the virtio-serial
// port of that name. Either may take a moment to appear after boot, so this
// waits for it up to 30 s. The descriptor is non-blocking; a terminal is
// put in raw mode, so that binary frames cross it untouched.
std::expected<Fd, std::string> open_channel(std::string_view where);

// Makes a descriptor the channel: non-blocking, closed on exec (commands
// must not inherit it) and, on a terminal, raw.
void prepare_channel(int fd);

}  // namespace kiln::agent
