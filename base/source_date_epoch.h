// SourceDateEpoch: the SOURCE_DATE_EPOCH convention of reproducible builds
// (reproducible-builds.org/specs/source-date-epoch): when set, it is the
// time every timestamp kiln writes (files in images, manifests, feeds,
// archives) uses instead of the clock. Bake, publish, make-fs and the
// container commands all read it here.
#pragma once

#include <cstdint>
#include <optional>

#include "base/error.h"

namespace kiln {

// SOURCE_DATE_EPOCH from the environment; an error when it is set but not a
// non-negative integer.
Result<std::optional<int64_t>> source_date_epoch_from_env();

}  // namespace kiln
