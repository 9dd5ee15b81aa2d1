// OfflineCustomizer: applies the customisation steps that need no program to
// run inside the image (hostname, timezone, users, passwords, files) straight
// to the image's ext4 filesystem, in the order of the operation table. This
// is why changing a hostname costs a re-assembly, not a re-bootstrap.
#pragma once

#include <vector>

#include "base/error.h"
#include "builder/plan.h"
#include "formats/ext4/ext4_image.h"

namespace kiln {

// Applies each step; an error points at the step's recipe line.
Result<> apply_offline_steps(const std::vector<CustomizeStep>& steps, const Plan& plan, Ext4Image& fs);

// Creates the missing parent directories of `path` (root-owned, 0755).
Result<> make_parents(Ext4Image& fs, std::string_view path, int64_t mtime);

}  // namespace kiln
