#include "formats/tree/dpkg_status.h"

#include <algorithm>
#include <tuple>

namespace kiln {

std::vector<InstalledPackage> installed_packages(std::string_view text) {
  std::vector<InstalledPackage> packages;
  InstalledPackage current;
  bool installed = false;
  auto flush = [&] {
    if (installed && !current.name.empty()) packages.push_back(current);
    current = {};
    installed = false;
  };
  while (true) {
    size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    if (line.empty()) {
      flush();
    } else if (line.front() != ' ') {
      size_t colon = line.find(':');
      if (colon != std::string_view::npos) {
        std::string_view field = line.substr(0, colon);
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        if (field == "Package") current.name = value;
        else if (field == "Version") current.version = value;
        else if (field == "Architecture") current.architecture = value;
        else if (field == "Status") installed = value == "install ok installed";
      }
    }
    if (newline == std::string_view::npos) break;
    text.remove_prefix(newline + 1);
  }
  flush();
  std::sort(packages.begin(), packages.end(),
            [](const auto& a, const auto& b) { return std::tie(a.name, a.architecture) < std::tie(b.name, b.architecture); });
  return packages;
}

}  // namespace kiln
