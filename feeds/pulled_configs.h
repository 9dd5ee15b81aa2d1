// PulledConfigs: the domain configs of a pulled image (NAME.xl.cfg,
// NAME.libvirt.xml) rewritten to point at the directory the image is pulled
// into, instead of the publisher's output directory.
#pragma once

#include <filesystem>
#include <vector>

#include "base/error.h"
#include "feeds/xvm_package.h"

namespace kiln {

// Rewrites the configs among the unpacked files in `staging` for
// `final_dir` (every path whose file is one of the image's own files) and
// returns the list with their new sizes and digests.
Result<std::vector<UnpackedFile>> relocate_configs(std::vector<UnpackedFile> files,
                                                   const std::filesystem::path& staging,
                                                   const std::filesystem::path& final_dir);

}  // namespace kiln
