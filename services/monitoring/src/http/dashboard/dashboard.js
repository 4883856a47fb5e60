(function () {
  'use strict';
  var params = new URLSearchParams(location.search);
  // A token given as ?token= is kept for this tab and dropped from the address bar.
  if (params.get('token')) {
    sessionStorage.setItem('quanta-token', params.get('token'));
    params.delete('token');
    history.replaceState(null, '', location.pathname + (params.toString() ? '?' + params : ''));
  }
  var token = sessionStorage.getItem('quanta-token');
  var windowSeconds = Number(params.get('window') || 300);
  var stepSeconds = Number(params.get('step') || 5);
  var COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#be185d', '#4d7c0f'];
  var SVG = 'http://www.w3.org/2000/svg';

  function el(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c];
    });
  }
  function fmt(v) {
    return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  }

  // lines: [{ key, label, color, dash, values: [number], total }]
  function drawChart(id, times, lines) {
    var svg = document.getElementById(id);
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var W = 600,
      H = 180,
      L = 48,
      R = 8,
      T = 8,
      B = 22;
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    var max = 0;
    lines.forEach(function (l) {
      l.values.forEach(function (v) {
        if (v > max) max = v;
      });
    });
    if (max === 0) max = 1;
    var n = Math.max(times.length, 2);
    var x = function (i) {
      return L + (i * (W - L - R)) / (n - 1);
    };
    var y = function (v) {
      return T + (H - T - B) * (1 - v / max);
    };
    for (var g = 0; g <= 4; g++) {
      var gv = (max * g) / 4;
      svg.appendChild(el('line', { x1: L, x2: W - R, y1: y(gv), y2: y(gv), stroke: '#eef0f3' }));
      svg.appendChild(
        el('text', { x: L - 4, y: y(gv) + 4, 'text-anchor': 'end', 'font-size': 10, fill: '#7a8291' }, fmt(gv)),
      );
    }
    if (times.length > 0) {
      [0, times.length - 1].forEach(function (i) {
        svg.appendChild(
          el(
            'text',
            { x: x(i), y: H - 6, 'text-anchor': i === 0 ? 'start' : 'end', 'font-size': 10, fill: '#7a8291' },
            new Date(times[i]).toLocaleTimeString(),
          ),
        );
      });
    }
    svg.setAttribute('data-lines', String(lines.length));
    lines.forEach(function (l) {
      var pts = l.values
        .map(function (v, i) {
          return x(i).toFixed(1) + ',' + y(v).toFixed(1);
        })
        .join(' ');
      svg.appendChild(
        el('polyline', {
          points: pts,
          fill: 'none',
          stroke: l.color,
          'stroke-width': 2,
          'stroke-dasharray': l.dash || '',
          'data-key': l.key,
          'data-model': l.model,
          'data-points': String(l.values.length),
          'data-total': String(l.total),
        }),
      );
    });
    var legend = document.getElementById(id.replace('chart', 'legend'));
    legend.innerHTML =
      lines.length === 0
        ? '<span class="empty">no requests in the window</span>'
        : lines
            .map(function (l) {
              return '<span><i style="background:' + l.color + '"></i>' + esc(l.label) + '</span>';
            })
            .join('');
  }

  function render(data) {
    var multi = data.tenant === null;
    var name = function (m) {
      return multi ? m.tenant + '/' + m.model : m.model;
    };
    document.getElementById('meta').textContent =
      (data.tenant === null ? 'all tenants' : 'tenant ' + data.tenant) +
      ' · last ' +
      data.windowSeconds +
      ' s, step ' +
      data.stepSeconds +
      ' s · updated ' +
      new Date(data.now).toLocaleTimeString();
    var times =
      data.models.length > 0
        ? data.models[0].points.map(function (p) {
            return p.t;
          })
        : [];
    var sum = function (m, f) {
      return m.points.reduce(function (a, p) {
        return a + f(p);
      }, 0);
    };
    drawChart(
      'chart-throughput',
      times,
      data.models.map(function (m, i) {
        return {
          key: m.tenant + '/' + m.model,
          model: m.model,
          label: name(m),
          color: COLORS[i % COLORS.length],
          values: m.points.map(function (p) {
            return p.rps;
          }),
          total: sum(m, function (p) {
            return p.count;
          }),
        };
      }),
    );
    var lat = [];
    data.models.forEach(function (m, i) {
      [
        ['p50', '2,3'],
        ['p95', '6,3'],
        ['p99', ''],
      ].forEach(function (q) {
        lat.push({
          key: m.tenant + '/' + m.model + ':' + q[0],
          model: m.model,
          label: name(m) + ' ' + q[0],
          color: COLORS[i % COLORS.length],
          dash: q[1],
          values: m.points.map(function (p) {
            return p[q[0]] / 1000;
          }),
          total: sum(m, function (p) {
            return p.count;
          }),
        });
      });
    });
    drawChart('chart-latency', times, lat);
    drawChart(
      'chart-errors',
      times,
      data.models.map(function (m, i) {
        return {
          key: m.tenant + '/' + m.model,
          model: m.model,
          label: name(m),
          color: COLORS[i % COLORS.length],
          values: m.points.map(function (p) {
            return p.count ? (100 * p.errors) / p.count : 0;
          }),
          total: sum(m, function (p) {
            return p.errors;
          }),
        };
      }),
    );
    drawChart(
      'chart-batch',
      times,
      data.models.map(function (m, i) {
        return {
          key: m.tenant + '/' + m.model,
          model: m.model,
          label: name(m),
          color: COLORS[i % COLORS.length],
          values: m.points.map(function (p) {
            return p.batch;
          }),
          total: sum(m, function (p) {
            return p.count;
          }),
        };
      }),
    );
    document.getElementById('models').innerHTML =
      '<tr><th>model</th><th>requests</th><th>req/s</th><th>errors</th>' +
      '<th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>batch</th></tr>' +
      (data.models.length === 0
        ? '<tr><td colspan="8" class="empty">no requests in the window</td></tr>'
        : data.models
            .map(function (m) {
              return (
                '<tr data-model="' +
                esc(m.model) +
                '" data-count="' +
                m.count +
                '"><td>' +
                esc(name(m)) +
                '</td><td>' +
                m.count +
                '</td><td>' +
                fmt(m.throughputRps) +
                '</td><td>' +
                (100 * m.errorRate).toFixed(1) +
                '%</td><td>' +
                fmt(m.p50Us / 1000) +
                '</td><td>' +
                fmt(m.p95Us / 1000) +
                '</td><td>' +
                fmt(m.p99Us / 1000) +
                '</td><td>' +
                fmt(m.meanBatchSize) +
                '</td></tr>'
              );
            })
            .join(''));
    // One row per version of each model: its route, and for a shadow how far it is from the primary.
    var agreement = function (s) {
      if (!s) return '';
      // JSON has no Infinity: an output missing on one side makes max_abs_error null.
      var max = s.maxAbsError === null ? '∞' : s.maxAbsError.toPrecision(3);
      return (
        s.compared +
        ' compared, max err ' +
        max +
        ', mean ' +
        s.meanAbsError.toPrecision(3) +
        (s.top1Agreement === null ? '' : ', top-1 ' + (100 * s.top1Agreement).toFixed(1) + '%')
      );
    };
    var versions = [];
    data.models.forEach(function (m) {
      (m.versions || []).forEach(function (v) {
        versions.push({ m: m, v: v });
      });
    });
    document.getElementById('versions').innerHTML =
      '<tr><th>model</th><th>version</th><th>route</th><th>requests</th><th>errors</th>' +
      '<th>p50 ms</th><th>p99 ms</th><th>shadow agreement</th></tr>' +
      (versions.length === 0
        ? '<tr><td colspan="8" class="empty">no requests in the window</td></tr>'
        : versions
            .map(function (r) {
              return (
                '<tr data-model="' +
                esc(r.m.model) +
                '" data-version="' +
                esc(r.v.version) +
                '" data-route="' +
                esc(r.v.route) +
                '"><td>' +
                esc(name(r.m)) +
                '</td><td>' +
                esc(r.v.version) +
                '</td><td>' +
                esc(r.v.route) +
                '</td><td>' +
                r.v.count +
                '</td><td>' +
                (100 * r.v.errorRate).toFixed(1) +
                '%</td><td>' +
                fmt(r.v.p50Us / 1000) +
                '</td><td>' +
                fmt(r.v.p99Us / 1000) +
                '</td><td>' +
                esc(agreement(r.v.shadow)) +
                '</td></tr>'
              );
            })
            .join(''));
    document.getElementById('health').innerHTML =
      '<tr><th>service</th><th>address</th><th>status</th><th>latency</th><th>since</th></tr>' +
      (data.health.length === 0
        ? '<tr><td colspan="5" class="empty">no targets configured</td></tr>'
        : data.health
            .map(function (h) {
              return (
                '<tr data-service="' +
                esc(h.name) +
                '" data-status="' +
                h.status +
                '"><td>' +
                esc(h.name) +
                '</td><td>' +
                esc(h.address) +
                '</td><td class="' +
                h.status +
                '" title="' +
                esc(h.error) +
                '">' +
                h.status +
                '</td><td>' +
                h.latencyMs.toFixed(1) +
                ' ms</td><td>' +
                (h.lastChange ? new Date(h.lastChange).toLocaleTimeString() : '') +
                '</td></tr>'
              );
            })
            .join(''));
    document.getElementById('alerts').innerHTML =
      '<tr><th>rule</th><th>model</th><th>state</th><th>message</th><th>since</th></tr>' +
      (data.alerts.length === 0
        ? '<tr><td colspan="5" class="empty">none</td></tr>'
        : data.alerts
            .map(function (a) {
              return (
                '<tr data-rule="' +
                esc(a.rule) +
                '" data-state="' +
                a.state +
                '"><td>' +
                esc(a.rule) +
                '</td><td>' +
                esc(a.model + (a.version ? ':' + a.version : '')) +
                '</td><td class="' +
                a.state +
                '">' +
                a.state +
                '</td><td>' +
                esc(a.message) +
                '</td><td>' +
                (a.since ? new Date(a.since).toLocaleTimeString() : '') +
                '</td></tr>'
              );
            })
            .join(''));
    // PSI below 0.1: stable; to 0.25: a moderate shift; above: a major one.
    var verdict = function (d) {
      return d.count === 0 ? 'no data' : d.psi < 0.1 ? 'stable' : d.psi <= 0.25 ? 'moderate' : 'major';
    };
    var drift = data.drift || [];
    document.getElementById('drift').innerHTML =
      '<tr><th>model</th><th>input</th><th>PSI</th><th>verdict</th><th>values</th><th>mean</th>' +
      '<th>baseline mean</th></tr>' +
      (drift.length === 0
        ? '<tr><td colspan="7" class="empty">no model has a drift baseline</td></tr>'
        : drift
            .map(function (d) {
              return (
                '<tr data-model="' +
                esc(d.model) +
                '" data-input="' +
                esc(d.input) +
                '" data-verdict="' +
                verdict(d) +
                '"><td>' +
                esc((data.tenant === null ? d.tenant + '/' : '') + d.model + (d.version ? ':' + d.version : '')) +
                '</td><td>' +
                esc(d.input) +
                '</td><td>' +
                d.psi.toFixed(3) +
                '</td><td class="' +
                verdict(d) +
                '">' +
                verdict(d) +
                '</td><td>' +
                d.count +
                '</td><td>' +
                d.mean.toPrecision(4) +
                '</td><td>' +
                d.baselineMean.toPrecision(4) +
                '</td></tr>'
              );
            })
            .join(''));
    document.body.setAttribute('data-updated', String(data.now));
  }

  function refresh() {
    var headers = token ? { authorization: 'Bearer ' + token } : {};
    fetch('api/overview?window=' + windowSeconds + '&step=' + stepSeconds, { headers: headers })
      .then(function (r) {
        return r.json().then(function (body) {
          if (!r.ok) throw new Error(body.error || r.statusText);
          return body;
        });
      })
      .then(function (data) {
        document.getElementById('error').textContent = '';
        render(data);
      })
      .catch(function (e) {
        document.getElementById('error').textContent =
          'cannot load data: ' + e.message + (token ? '' : ' (open this page with ?token=<a monitoring:read token>)');
      })
      .then(function () {
        setTimeout(refresh, 2000);
      });
  }
  refresh();
})();
