/* The helper library Python loads with ctypes to bracket the audited region.
 * Outside Valgrind each request is a no-op that returns 0. */
#include "region.h"

/* 1 when running under pafree's Valgrind tool, else 0. */
int pafree_running(void)
{
   return (int)VALGRIND_DO_CLIENT_REQUEST_EXPR(0, PAFREE_RUNNING, 0, 0, 0, 0, 0);
}

void pafree_region_begin(void)
{
   VALGRIND_DO_CLIENT_REQUEST_STMT(PAFREE_REGION_BEGIN, 0, 0, 0, 0, 0);
}

void pafree_region_end(void)
{
   VALGRIND_DO_CLIENT_REQUEST_STMT(PAFREE_REGION_END, 0, 0, 0, 0, 0);
}

/* Write the sites counted since the last dump to the next output file. */
void pafree_dump(void)
{
   VALGRIND_DO_CLIENT_REQUEST_STMT(PAFREE_DUMP, 0, 0, 0, 0, 0);
}
