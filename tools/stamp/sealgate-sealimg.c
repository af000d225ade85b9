/*
 * sealgate-sealimg: draws a seal's image to a PNG file to look at, the
 * same image sealctl stamp puts on the page (sealimg.c): the round seal
 * from its company name and kind, or a policy's PNG/SVG scaled.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "sealimg.h"

static void usage(FILE *f)
{
	fputs("usage: sealgate-sealimg --seal-name COMPANY [--kind KIND] [--code CODE]\n"
	      "                        [--diameter PX] [--color #RRGGBB] [--font FAMILY] -o OUT.png\n"
	      "       sealgate-sealimg --image FILE.png|FILE.svg [--diameter PX] -o OUT.png\n"
	      "KIND: contract (合同专用章), finance (财务专用章), invoice (发票专用章),\n"
	      "official (none, the default) or the text itself.\n", f);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "seal-name", required_argument, NULL, 'n' },
		{ "kind", required_argument, NULL, 'k' },
		{ "code", required_argument, NULL, 'c' },
		{ "diameter", required_argument, NULL, 'd' },
		{ "color", required_argument, NULL, 'C' },
		{ "font", required_argument, NULL, 'f' },
		{ "image", required_argument, NULL, 'i' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct sg_sealimg_spec spec = { 0 };
	struct sg_image img = { 0 };
	const char *image = NULL, *output = NULL;
	char err[512];
	int c, rv;

	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'n': spec.company = optarg; break;
		case 'k': spec.kind = sg_sealimg_kind_text(optarg); break;
		case 'c': spec.code = optarg; break;
		case 'd': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);

			if (*end || !*optarg || v > SG_SEALIMG_MAX_DIAMETER) {
				fprintf(stderr, "sealgate-sealimg: --diameter is %u to %u pixels\n",
					SG_SEALIMG_MIN_DIAMETER, SG_SEALIMG_MAX_DIAMETER);
				return 2;
			}
			spec.diameter = (unsigned)v;
			break;
		}
		case 'C': spec.color = optarg; break;
		case 'f': spec.font = optarg; break;
		case 'i': image = optarg; break;
		case 'o': output = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || !output || !!image == !!spec.company) {
		usage(stderr);
		return 2;
	}
	if (image)
		rv = sg_sealimg_load(image, spec.diameter, &img, err, sizeof(err));
	else
		rv = sg_sealimg_render(&spec, &img, err, sizeof(err));
	if (rv == 0)
		rv = sg_sealimg_write_png(&img, output, err, sizeof(err));
	sg_image_clear(&img);
	if (rv < 0) {
		fprintf(stderr, "sealgate-sealimg: %s\n", err);
		return 1;
	}
	return 0;
}
