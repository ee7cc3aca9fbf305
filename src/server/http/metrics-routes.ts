// GET /metrics: the server's Prometheus metrics in the text format (0.0.4), for a scraper or the dashboard.

import type { HttpContext, HttpRoute } from './routes.js';
import { sendText } from './routes.js';

export function metricsRoutes(ctx: HttpContext): HttpRoute[] {
  // made now, when the listener starts: its histograms count from here on
  const metrics = ctx.server.metrics;
  return [
    {
      path: '/metrics',
      async handle(_req, res) {
        sendText(res, 200, metrics.contentType, await metrics.text());
      },
    },
  ];
}
