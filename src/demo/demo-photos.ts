import sharp from 'sharp';

const PALETTE = ['#8fb3d9', '#d9b38f', '#a3c9a8', '#c9a3c4', '#e0d28a', '#9fb0bf'];

/**
 * A made-up listing photo: sky, a house, a door and a label, different for
 * each number, 1200x800 JPEG (or a PNG with transparency now and then, and
 * one with an EXIF orientation, so the demo shows those being handled).
 */
export async function demoPhoto(n: number): Promise<{ body: Buffer; type: string }> {
  const sky = PALETTE[n % PALETTE.length];
  const wall = PALETTE[(n * 7 + 3) % PALETTE.length];
  const x = 250 + ((n * 97) % 500);
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="1200" height="800">
    <defs><linearGradient id="g" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="${sky}"/><stop offset="1" stop-color="#ffffff"/></linearGradient></defs>
    <rect width="1200" height="800" fill="url(#g)"/>
    <rect y="600" width="1200" height="200" fill="#6b8e4e"/>
    <rect x="${x}" y="330" width="420" height="300" fill="${wall}" stroke="#333" stroke-width="6"/>
    <polygon points="${x - 30},340 ${x + 210},170 ${x + 450},340" fill="#8b3a3a"/>
    <rect x="${x + 170}" y="470" width="80" height="160" fill="#5a3b22"/>
    <rect x="${x + 40}" y="400" width="90" height="80" fill="#dfefff" stroke="#333" stroke-width="4"/>
    <rect x="${x + 290}" y="400" width="90" height="80" fill="#dfefff" stroke="#333" stroke-width="4"/>
    <text x="40" y="90" font-family="sans-serif" font-size="64" fill="#1d2330">Listing photo ${n}</text>
  </svg>`;
  const image = sharp(Buffer.from(svg));
  if (n % 10 === 7) return { body: await image.png().toBuffer(), type: 'image/png' };
  // Stored sideways with EXIF orientation 6: must come out upright.
  if (n % 10 === 3) return { body: await image.rotate(-90).jpeg({ quality: 88 }).withMetadata({ orientation: 6 }).toBuffer(), type: 'image/jpeg' };
  return { body: await image.jpeg({ quality: 88 }).toBuffer(), type: 'image/jpeg' };
}
