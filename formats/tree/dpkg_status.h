// DpkgStatus: the installed packages recorded in a Debian image's
// /var/lib/dpkg/status, for the manifest and for comparing bakes.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kiln {

struct InstalledPackage {
  std::string name;
  std::string version;
  std::string architecture;
};

// Packages whose Status is "install ok installed", sorted by name.
std::vector<InstalledPackage> installed_packages(std::string_view status_file);

}  // namespace kiln
