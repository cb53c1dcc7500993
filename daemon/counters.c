/* counters.c - the table of daemon-wide counters (see counters.h). */
#include "counters.h"

const struct counter_def counter_defs[] = {
#define GRANARY_COUNTER_DEF(field, fam, lab, val, hlp)                                             \
	{.name = #field,                                                                           \
	 .family = fam,                                                                            \
	 .label = lab,                                                                             \
	 .value = val,                                                                             \
	 .help = hlp,                                                                              \
	 .off = offsetof(struct counters, field)},
	GRANARY_COUNTERS(GRANARY_COUNTER_DEF)
#undef GRANARY_COUNTER_DEF
};

const size_t counter_defs_n = sizeof(counter_defs) / sizeof(counter_defs[0]);
