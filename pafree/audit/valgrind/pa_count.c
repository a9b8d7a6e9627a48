/* pafree's Valgrind tool: count every executed float multiply, divide, square
 * root, fused multiply-add, reciprocal / rsqrt estimate, scale and x87
 * transcendental, at the VEX IR level, in every thread, library, the
 * interpreter and JIT code, but only while the audited region is open.
 *
 * The region is opened and closed by client requests (region.c); regions may
 * nest.  A "site" is one guest instruction and one class of operation; it is
 * counted once per execution of the instruction (a vfmadd231ps ymm that VEX
 * splits into eight MAddF32 is one execution of one site).  The first time a
 * site runs inside the region its call stack is recorded.  The dump request
 * writes every site with a count, symbolized (object, function, file:line of
 * each frame), to FILE.N (N = 0, 1, ... for successive dumps; FILE given by
 * --pafree-out=FILE) and sets the counts back to zero.  The lines are
 * tab-separated:
 *     site <class> <IR op> <count> <frame>;<frame>;...
 * with each frame "0xADDR|object|function|file:line" ("" where unknown).
 *
 * Built by pafree.audit.machine against Debian's valgrind headers and static
 * libraries; VALGRIND_LIB points at a folder holding it as pafree-amd64-linux.
 */
#include "pub_tool_basics.h"
#include "pub_tool_tooliface.h"
#include "pub_tool_libcassert.h"
#include "pub_tool_libcbase.h"
#include "pub_tool_libcprint.h"
#include "pub_tool_libcfile.h"
#include "pub_tool_debuginfo.h"
#include "pub_tool_hashtable.h"
#include "pub_tool_mallocfree.h"
#include "pub_tool_machine.h"
#include "pub_tool_options.h"
#include "pub_tool_stacktrace.h"
#include "pub_tool_threadstate.h"
#include "pub_tool_vki.h"

#include "region.h"

#define STACK_DEPTH 8

/* ------------------------------------------------------------------ ops */

typedef struct { IROp op; const HChar* name; const HChar* cls; } OpClass;

#define OP(o, c) { Iop_##o, #o, c }
static const OpClass OPS[] = {
   OP(MulF32, "mul"), OP(MulF64, "mul"), OP(MulF64r32, "mul"), OP(MulF128, "mul"),
   OP(MulD64, "mul"), OP(MulD128, "mul"),
   OP(Mul32F0x4, "mul"), OP(Mul64F0x2, "mul"), OP(Mul32Fx2, "mul"),
   OP(Mul32Fx4, "mul"), OP(Mul64Fx2, "mul"), OP(Mul32Fx8, "mul"), OP(Mul64Fx4, "mul"),
   OP(DivF32, "div"), OP(DivF64, "div"), OP(DivF64r32, "div"), OP(DivF128, "div"),
   OP(DivD64, "div"), OP(DivD128, "div"),
   OP(Div32F0x4, "div"), OP(Div64F0x2, "div"),
   OP(Div32Fx4, "div"), OP(Div64Fx2, "div"), OP(Div32Fx8, "div"), OP(Div64Fx4, "div"),
   OP(SqrtF16, "sqrt"), OP(SqrtF32, "sqrt"), OP(SqrtF64, "sqrt"), OP(SqrtF128, "sqrt"),
   OP(Sqrt32F0x4, "sqrt"), OP(Sqrt64F0x2, "sqrt"), OP(Sqrt16Fx8, "sqrt"),
   OP(Sqrt32Fx4, "sqrt"), OP(Sqrt64Fx2, "sqrt"), OP(Sqrt32Fx8, "sqrt"), OP(Sqrt64Fx4, "sqrt"),
   OP(MAddF32, "fma"), OP(MAddF64, "fma"), OP(MAddF64r32, "fma"), OP(MAddF128, "fma"),
   OP(MSubF32, "fma"), OP(MSubF64, "fma"), OP(MSubF64r32, "fma"), OP(MSubF128, "fma"),
   OP(NegMAddF128, "fma"), OP(NegMSubF128, "fma"),
   OP(RecipEst32F0x4, "recip"), OP(RecipEst32Fx2, "recip"), OP(RecipEst32Fx4, "recip"),
   OP(RecipEst32Fx8, "recip"), OP(RecipEst64Fx2, "recip"),
   OP(RecipStep32Fx2, "recip"), OP(RecipStep32Fx4, "recip"), OP(RecipStep64Fx2, "recip"),
   OP(RecpExpF32, "recip"), OP(RecpExpF64, "recip"),
   OP(RSqrtEst32F0x4, "rsqrt"), OP(RSqrtEst32Fx2, "rsqrt"), OP(RSqrtEst32Fx4, "rsqrt"),
   OP(RSqrtEst32Fx8, "rsqrt"), OP(RSqrtEst64Fx2, "rsqrt"), OP(RSqrtEst5GoodF64, "rsqrt"),
   OP(RSqrtStep32Fx2, "rsqrt"), OP(RSqrtStep32Fx4, "rsqrt"), OP(RSqrtStep64Fx2, "rsqrt"),
   OP(ScaleF64, "scale"), OP(Scale2_32Fx4, "scale"), OP(Scale2_64Fx2, "scale"),
   OP(SinF64, "transcendental"), OP(CosF64, "transcendental"), OP(TanF64, "transcendental"),
   OP(AtanF64, "transcendental"), OP(2xm1F64, "transcendental"),
   OP(Yl2xF64, "transcendental"), OP(Yl2xp1F64, "transcendental"),
   OP(PRemF64, "transcendental"), OP(PRem1F64, "transcendental"),
   OP(PRemC3210F64, "transcendental"), OP(PRem1C3210F64, "transcendental"),
   OP(Exp2_32Fx4, "transcendental"), OP(Log2_32Fx4, "transcendental"),
   OP(Log2_64Fx2, "transcendental"),
};
#undef OP
#define N_OPS (sizeof(OPS) / sizeof(OPS[0]))

static const OpClass* classify(IRExpr* e)
{
   IROp op;
   switch (e->tag) {
      case Iex_Unop:  op = e->Iex.Unop.op; break;
      case Iex_Binop: op = e->Iex.Binop.op; break;
      case Iex_Triop: op = e->Iex.Triop.details->op; break;
      case Iex_Qop:   op = e->Iex.Qop.details->op; break;
      default: return NULL;
   }
   for (UInt i = 0; i < N_OPS; i++)
      if (OPS[i].op == op) return &OPS[i];
   return NULL;
}

/* ---------------------------------------------------------------- sites */

typedef struct {
   VgHashNode node;            /* key: instruction address * 16 + class index */
   Addr addr;
   const OpClass* op;
   ULong count;
   UInt n_ips;
   Addr ips[STACK_DEPTH];
} Site;

static VgHashTable* sites;
static Int depth = 0;          /* open regions */
static ULong counting = 0;     /* 1 while depth > 0: added to each count inline */
static const HChar* clo_out = NULL;
static Int dumps = 0;           /* files written so far */
static Bool counted_since_dump = False;

static UWord class_index(const HChar* cls)
{
   static const HChar* CLASSES[] = {"mul", "div", "sqrt", "fma", "recip", "rsqrt",
                                    "scale", "transcendental"};
   for (UWord i = 0; i < sizeof(CLASSES) / sizeof(CLASSES[0]); i++)
      if (VG_(strcmp)(CLASSES[i], cls) == 0) return i;
   tl_assert(0);
}

static Site* site_for(Addr addr, const OpClass* op)
{
   UWord key = (addr << 4) | class_index(op->cls);
   Site* s = VG_(HT_lookup)(sites, key);
   if (s == NULL) {
      s = VG_(calloc)("pafree.site", 1, sizeof(Site));
      s->node.key = key;
      s->addr = addr;
      s->op = op;
      VG_(HT_add_node)(sites, s);
   }
   return s;
}

/* Called (guarded) on an execution that found the count at zero: record the
 * stack of the first execution inside the region. */
static VG_REGPARM(1) void first_hit(Site* s)
{
   if (!counting) return;
   counted_since_dump = True;
   s->n_ips = VG_(get_StackTrace)(VG_(get_running_tid)(), s->ips, STACK_DEPTH,
                                  NULL, NULL, 0);
   if (s->n_ips == 0) s->n_ips = 1;
   s->ips[0] = s->addr;        /* the guest IP may lag behind inside a block */
}

/* ------------------------------------------------------ instrumentation */

/* count += counting, inline; and when the count was zero, a call to first_hit. */
static void add_hit(IRSB* sb, Site* s, const VexGuestLayout* layout)
{
   IRTemp on = newIRTemp(sb->tyenv, Ity_I64);
   IRTemp old = newIRTemp(sb->tyenv, Ity_I64);
   IRTemp new = newIRTemp(sb->tyenv, Ity_I64);
   IRTemp first = newIRTemp(sb->tyenv, Ity_I1);
   addStmtToIRSB(sb, IRStmt_WrTmp(on, IRExpr_Load(Iend_LE, Ity_I64,
                                                  mkIRExpr_HWord((HWord)&counting))));
   addStmtToIRSB(sb, IRStmt_WrTmp(old, IRExpr_Load(Iend_LE, Ity_I64,
                                                   mkIRExpr_HWord((HWord)&s->count))));
   addStmtToIRSB(sb, IRStmt_WrTmp(new, IRExpr_Binop(Iop_Add64, IRExpr_RdTmp(old),
                                                    IRExpr_RdTmp(on))));
   addStmtToIRSB(sb, IRStmt_Store(Iend_LE, mkIRExpr_HWord((HWord)&s->count),
                                  IRExpr_RdTmp(new)));
   addStmtToIRSB(sb, IRStmt_WrTmp(first, IRExpr_Binop(Iop_CmpEQ64, IRExpr_RdTmp(old),
                                                      IRExpr_Const(IRConst_U64(0)))));
   IRDirty* di = unsafeIRDirty_0_N(1, "pafree_first_hit",
                                   VG_(fnptr_to_fnentry)(&first_hit),
                                   mkIRExprVec_1(mkIRExpr_HWord((HWord)s)));
   di->guard = IRExpr_RdTmp(first);
   /* the helper unwinds the stack: make SP, FP and IP current before it */
   di->nFxState = 3;
   di->fxState[0].fx = Ifx_Read;
   di->fxState[0].offset = layout->offset_SP;
   di->fxState[0].size = layout->sizeof_SP;
   di->fxState[1].fx = Ifx_Read;
   di->fxState[1].offset = layout->offset_FP;
   di->fxState[1].size = layout->sizeof_FP;
   di->fxState[2].fx = Ifx_Read;
   di->fxState[2].offset = layout->offset_IP;
   di->fxState[2].size = layout->sizeof_IP;
   for (Int i = 0; i < 3; i++) {
      di->fxState[i].nRepeats = 0;
      di->fxState[i].repeatLen = 0;
   }
   addStmtToIRSB(sb, IRStmt_Dirty(di));
}

static IRSB* instrument(VgCallbackClosure* closure, IRSB* sb_in,
                        const VexGuestLayout* layout, const VexGuestExtents* vge,
                        const VexArchInfo* archinfo_host, IRType gWordTy, IRType hWordTy)
{
   IRSB* sb_out = deepCopyIRSBExceptStmts(sb_in);
   Addr insn = 0;
   Site* counted[8];           /* sites already counted for the current instruction */
   Int n_counted = 0;

   for (Int i = 0; i < sb_in->stmts_used; i++) {
      IRStmt* st = sb_in->stmts[i];
      if (st == NULL) continue;
      if (st->tag == Ist_IMark) {
         insn = (Addr)st->Ist.IMark.addr + st->Ist.IMark.delta;
         n_counted = 0;
      } else if (st->tag == Ist_WrTmp) {
         const OpClass* op = classify(st->Ist.WrTmp.data);
         if (op != NULL) {
            Site* s = site_for(insn, op);
            Bool seen = False;
            for (Int k = 0; k < n_counted; k++)
               if (counted[k] == s) seen = True;
            if (!seen) {
               add_hit(sb_out, s, layout);
               if (n_counted < 8) counted[n_counted++] = s;
            }
         }
      }
      addStmtToIRSB(sb_out, st);
   }
   return sb_out;
}

/* --------------------------------------------------------------- output */

static void write_frame(VgFile* f, DiEpoch ep, Addr ip)
{
   const HChar *obj = "", *fn = "", *file = "", *dir = "";
   UInt line = 0;
   if (!VG_(get_objname)(ep, ip, &obj)) obj = "";
   VG_(fprintf)(f, "0x%lx|%s|", ip, obj);
   if (!VG_(get_fnname)(ep, ip, &fn)) fn = "";
   VG_(fprintf)(f, "%s|", fn);
   if (VG_(get_filename_linenum)(ep, ip, &file, &dir, &line))
      VG_(fprintf)(f, "%s:%u", file, line);
}

static void dump_sites(void)
{
   if (clo_out == NULL) return;
   HChar* path = VG_(malloc)("pafree.path", VG_(strlen)(clo_out) + 16);
   VG_(sprintf)(path, "%s.%d", clo_out, dumps++);
   VgFile* f = VG_(fopen)(path, VKI_O_CREAT | VKI_O_TRUNC | VKI_O_WRONLY,
                          VKI_S_IRUSR | VKI_S_IWUSR);
   if (f == NULL) {
      VG_(umsg)("pafree: cannot write %s\n", path);
      VG_(free)(path);
      return;
   }
   DiEpoch ep = VG_(current_DiEpoch)();
   VG_(HT_ResetIter)(sites);
   Site* s;
   while ((s = VG_(HT_Next)(sites)) != NULL) {
      if (s->count == 0) continue;
      VG_(fprintf)(f, "site\t%s\t%s\t%llu\t", s->op->cls, s->op->name, s->count);
      for (UInt k = 0; k < s->n_ips; k++) {
         if (k > 0) VG_(fprintf)(f, ";");
         write_frame(f, ep, s->ips[k]);
      }
      VG_(fprintf)(f, "\n");
      s->count = 0;
   }
   VG_(fprintf)(f, "end\n");
   VG_(fclose)(f);
   VG_(free)(path);
   counted_since_dump = False;
}

/* ------------------------------------------------------ client requests */

static Bool handle_client_request(ThreadId tid, UWord* args, UWord* ret)
{
   if (!VG_IS_TOOL_USERREQ('P', 'A', args[0])) return False;
   switch (args[0]) {
      case PAFREE_REGION_BEGIN:
         depth++;
         counting = 1;
         break;
      case PAFREE_REGION_END:
         if (depth > 0) depth--;
         counting = depth > 0;
         break;
      case PAFREE_DUMP:
         dump_sites();
         break;
      case PAFREE_RUNNING:
         break;
      default:
         return False;
   }
   *ret = 1;                   /* 1: "running under pafree's tool" */
   return True;
}

/* ------------------------------------------------------------ the tool */

static Bool process_cmd_line_option(const HChar* arg)
{
   if VG_STR_CLO(arg, "--pafree-out", clo_out) {}
   else return False;
   return True;
}

static void print_usage(void)
{
   VG_(printf)("    --pafree-out=FILE   write the counted sites to FILE\n");
}

static void print_debug_usage(void) {}

static void post_clo_init(void) {}

static void fini(Int exitcode)
{
   if (counted_since_dump) dump_sites();   /* never dumped: still report */
}

static void pre_clo_init(void)
{
   VG_(details_name)("pafree");
   VG_(details_version)(NULL);
   VG_(details_description)("counts float multiply-like instructions in a region");
   VG_(details_copyright_author)("pafree contributors (MIT)");
   VG_(details_bug_reports_to)("the pafree issue tracker");
   VG_(basic_tool_funcs)(post_clo_init, instrument, fini);
   VG_(needs_command_line_options)(process_cmd_line_option, print_usage,
                                   print_debug_usage);
   VG_(needs_client_requests)(handle_client_request);
   sites = VG_(HT_construct)("pafree.sites");
}

VG_DETERMINE_INTERFACE_VERSION(pre_clo_init)
