// AptSources: finds the Debian mirror the host's apt already uses, so that a
// recipe without bootstrap.mirror fetches from the same place (a local
// mirror or proxy on a closed network) instead of guessing.
#pragma once

#include <filesystem>
#include <string>

namespace kiln {

// The URI of the host's main Debian archive: the first source whose suites
// include the host's release codename itself (not -updates or -security).
// Reads ETC_APT/sources.list, sources.list.d/*.list and *.sources (deb822).
// Falls back to http://deb.debian.org/debian.
std::string host_debian_mirror(const std::filesystem::path& etc_apt = "/etc/apt",
                               const std::filesystem::path& os_release = "/etc/os-release");

}  // namespace kiln
