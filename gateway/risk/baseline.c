/*
 * Robust baselines for the volume rules: median and median absolute
 * deviation, so one busy week in the history does not raise the bar the
 * way a mean and standard deviation would.
 */
#include "risk.h"

#include <math.h>
#include <stdlib.h>

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double
gw_risk_median(double *v, size_t n)
{
	if (n == 0)
		return 0;
	/* Histories are a few weeks long: sorting is cheaper than clever. */
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double
gw_risk_mad(double *v, size_t n, double med)
{
	for (size_t i = 0; i < n; i++)
		v[i] = v[i] > med ? v[i] - med : med - v[i];
	return gw_risk_median(v, n);
}

double
gw_risk_threshold(double *v, size_t n, double k)
{
	double med = gw_risk_median(v, n);
	double spread = 1.4826 * gw_risk_mad(v, n, med);

	/* Counts of signatures are roughly Poisson: a flat history (MAD 0)
	 * still varies by about the square root of its level. */
	if (spread < sqrt(med))
		spread = sqrt(med);
	return med + k * (spread > 1 ? spread : 1);
}
