#include "formats/tree/dpkg_status.h"

#include <algorithm>
#include <tuple>

#include "formats/tree/deb822.h"

namespace kiln {

std::vector<InstalledPackage> installed_packages(std::string_view text) {
  std::vector<InstalledPackage> packages;
  for_each_paragraph(text, [&](const Deb822Paragraph& paragraph) {
    if (paragraph.get("Status") != "install ok installed" || paragraph.get("Package").empty()) return;
    packages.push_back({std::string(paragraph.get("Package")), std::string(paragraph.get("Version")),
                        std::string(paragraph.get("Architecture"))});
  });
  std::sort(packages.begin(), packages.end(),
            [](const auto& a, const auto& b) { return std::tie(a.name, a.architecture) < std::tie(b.name, b.architecture); });
  return packages;
}

}  // namespace kiln
