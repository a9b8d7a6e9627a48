/* Client requests shared by pafree's Valgrind tool (pa_count.c) and the
 * helper library that brackets the audited region (region.c). */
#ifndef PAFREE_REGION_H
#define PAFREE_REGION_H
#include "valgrind.h"

enum {
   PAFREE_REGION_BEGIN = VG_USERREQ_TOOL_BASE('P', 'A'),
   PAFREE_REGION_END,
   PAFREE_DUMP,
   PAFREE_RUNNING,
};
#endif
