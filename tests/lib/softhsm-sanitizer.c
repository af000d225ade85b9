/*
 * Sanitizer settings for the test programs that load SoftHSM2 into their
 * own process: SoftHSM2 2.6.1 leaks in C_SignInit for EdDSA and at
 * C_Finalize (shared/FACTS.md), not ours to fix, so LeakSanitizer ignores
 * leaks from libsofthsm2.so. Linked into those tests (tests/meson.build).
 */
const char *__lsan_default_suppressions(void);
const char *__asan_default_options(void);

const char *
__lsan_default_suppressions(void)
{
	/* fontconfig as in tools/stamp/sealimg.c, whose weak suppressions
	 * these replace in the tests linking the gateway (which links it) */
	return "leak:libsofthsm2.so\nleak:libfontconfig.so\n";
}

/* The fast unwinder stops in libcrypto (no frame pointers) before reaching
 * SoftHSM's frames, and the suppression could not match. */
const char *
__asan_default_options(void)
{
	return "fast_unwind_on_malloc=0";
}
