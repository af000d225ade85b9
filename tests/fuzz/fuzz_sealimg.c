/* Fuzz target: a policy's seal image (tools/stamp/sealimg.c,
 * sg_sealimg_load_mem: PNG through cairo/libpng, SVG through librsvg, the
 * limits checked before either decodes). What loads is the asked square
 * with some ink in it. */
#include <stdint.h>
#include <stdlib.h>

#include "sealimg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sg_image img;
	char err[512];
	size_t i, ink = 0;

	if (sg_sealimg_load_mem(data, size, 48, &img, err, sizeof(err)) == 0) {
		if (img.width != 48 || img.height != 48 || img.stride != 48 * 4 || !img.rgba)
			abort();
		for (i = 0; i < 48 * 48; i++)
			ink += img.rgba[i * 4 + 3] != 0;
		if (!ink)
			abort();
		sg_image_clear(&img);
	} else if (img.rgba != NULL || err[0] == '\0') {
		abort();
	}
	return 0;
}
