// StaleTemps: temporary directories that say which process made them, so that
// a later run can remove those a killed run left behind (SIGKILL, a power
// cut), and only those.
//
// A tagged directory is named PARENT/.PREFIX-PID.START-XXXXXX, where START is
// the process's start time (field 22 of /proc/PID/stat): with it, a PID the
// kernel has since given to another process does not pass for the owner. A
// directory is stale when that name matches and no process with that PID and
// start time exists. Anything else (another prefix, an untagged name, a
// live owner) is left alone.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

#include "base/error.h"
#include "base/files.h"

namespace kiln {

// "PID.START" for this process.
std::string process_tag();

// Creates PARENT/.PREFIX-PID.START-XXXXXX, removed when the TempDir goes.
Result<TempDir> create_tagged_temp_dir(const std::filesystem::path& parent, std::string_view prefix);

// Removes PARENT/.PREFIX-PID.START-* whose process is gone; returns how many.
// A missing PARENT holds none.
size_t remove_stale_temp_dirs(const std::filesystem::path& parent, std::string_view prefix);

}  // namespace kiln
